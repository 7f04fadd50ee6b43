using Faultline.Areas;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mprotect</c> (<c>do_mprotect_pkey</c>, <c>mprotect_fixup</c>, <c>change_protection</c>) with Linux's checks and
/// errno values. Like Linux, a range with a hole (or a sealed VMA) fails after changing the VMAs before it.
/// </summary>
internal sealed class MprotectSyscall
{
    private const Protection KnownProtection = Protection.Read | Protection.Write | Protection.Execute | Protection.Semaphore
        | Protection.GrowsDown | Protection.GrowsUp;

    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly PagePopulator _populator;
    private readonly object _owner;
    // The VMAs of the range, reused so a call allocates nothing; guarded by the mmap write lock, held while it is used.
    private readonly List<Vma> _affected = [];
    // The ranges a call must populate once it has dropped the mmap lock; per thread, since concurrent calls only
    // exclude each other while they hold that lock.
    [ThreadStatic]
    private static List<(ulong From, ulong To)>? tPopulateRanges;

    /// <summary><c>mprotect</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MprotectSyscall(MemoryDescriptor mm, VmaEditor editor, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _populator = populator;
        _owner = owner;
    }

    private static List<(ulong From, ulong To)> PopulateRanges => tPopulateRanges ??= [];

    /// <summary>
    /// Changes the protection of [address, address + length). As on Linux, the VMAs are changed one by one from the
    /// start: a hole, a sealed VMA or a refused split stops the walk with its errno, and the VMAs before it keep their
    /// new protection.
    /// </summary>
    public Errno Protect(ulong address, ulong length, Protection protection)
    {
        _mm.SharedCounters.AddShared(VmEvent.ProtectCall);
        // do_mprotect_pkey's order: both grows bits, alignment, zero length, overflow, then the protection bits.
        if ((protection & (Protection.GrowsDown | Protection.GrowsUp)) == (Protection.GrowsDown | Protection.GrowsUp)
            || (address & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        if (length == 0)
        {
            return Errno.None;
        }
        ulong aligned = PageGeometry.PageAlign(length);
        ulong end = address + aligned;
        if (aligned == 0 || end <= address)
        {
            return Errno.ENOMEM;
        }
        if ((protection & ~KnownProtection) != 0)
        {
            return Errno.EINVAL;
        }
        VmFlags access = VmFlagBits.CalcVmProtBits(protection);
        PopulateRanges.Clear();
        Errno result;
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            result = ProtectLocked(address, end, protection, access);
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        // mprotect_fixup: a locked VMA becoming writable is faulted in for writing, so COW is broken now rather than at
        // a later fault (the kernel does it under the mmap lock; here the faults take it themselves).
        foreach ((ulong from, ulong to) in PopulateRanges)
        {
            _populator.Populate(from, to, ignoreErrors: true);
        }
        return result;
    }

    // The part of do_mprotect_pkey under the mmap write lock.
    private Errno ProtectLocked(ulong address, ulong end, Protection protection, VmFlags access)
    {
        List<Vma> affected = _affected;
        _mm.Tree.Intersecting(address, end, affected);
        if (affected.Count == 0)
        {
            return Errno.ENOMEM;
        }
        if ((protection & Protection.GrowsDown) != 0)
        {
            // The walk starts at the first VMA in the range, even past a hole at the start.
            if ((affected[0].Flags & VmFlags.GrowsDown) == 0)
            {
                return Errno.EINVAL;
            }
            address = affected[0].Start;
        }
        else if (affected[0].Start > address)
        {
            return Errno.ENOMEM;
        }
        else if ((protection & Protection.GrowsUp) != 0)
        {
            // VM_GROWSUP does not exist on x86-64.
            return Errno.EINVAL;
        }
        return ChangeProtection(affected, address, end, access);
    }

    // The loop of do_mprotect_pkey with mprotect_fixup for each VMA: unchanged VMAs stay; changed ones are split at
    // the range edges and replaced and their PTEs rewritten; then neighbours are merged as vma_modify_flags would.
    // The first failure ends the walk; what was changed before it stays changed.
    private Errno ChangeProtection(List<Vma> affected, ulong start, ulong end, VmFlags access)
    {
        MmuGather gather = _mm.RentGather();
        Errno error = Errno.None;
        ulong reached = affected[0].Start;
        bool changed = false;
        foreach (Vma vma in affected)
        {
            if (vma.Start != reached)
            {
                error = Errno.ENOMEM;
                break;
            }
            VmFlags newFlags = NewFlags(vma, access);
            // do_mprotect_pkey: an access bit without its VM_MAY* bit (newflags >> 4), such as PROT_WRITE on a shared
            // mapping of a file opened read-only.
            if (((ulong)newFlags & ~((ulong)newFlags >> 4) & (ulong)VmFlags.AccessFlags) != 0)
            {
                error = Errno.EACCES;
                break;
            }
            // mprotect_fixup: a sealed VMA refuses even a change to what it already has.
            if ((vma.Flags & VmFlags.Sealed) != 0)
            {
                error = Errno.EPERM;
                break;
            }
            reached = Math.Min(end, vma.End);
            if (newFlags == vma.Flags)
            {
                continue;
            }
            // Each split must fit under the map count and be allowed by the backing.
            int splits = (vma.Start < start ? 1 : 0) + (vma.End > end ? 1 : 0);
            if (splits > 0 && _mm.Tree.Count + splits > _mm.Settings.MaxMapCount)
            {
                error = Errno.ENOMEM;
                break;
            }
            if ((vma.Start < start && !VmaEditor.MaySplitAt(vma, start)) || (vma.End > end && !VmaEditor.MaySplitAt(vma, end)))
            {
                error = Errno.EINVAL;
                break;
            }
            changed = true;
            bool populate = (vma.Flags & (VmFlags.Write | VmFlags.Shared | VmFlags.Locked)) == VmFlags.Locked && (newFlags & VmFlags.Write) != 0;
            if (populate)
            {
                PopulateRanges.Add((Math.Max(start, vma.Start), Math.Min(end, vma.End)));
            }
            _editor.ReplaceFlags(vma, start, end, newFlags);
            ulong pieceStart = Math.Max(start, vma.Start), pieceEnd = Math.Min(end, vma.End);
            // populate_vma_page_range faults nothing in for VM_LOCKONFAULT, so no anon_vma is chosen then.
            if (populate && (newFlags & VmFlags.LockOnFault) == 0 && vma.Backing.IsAnonymous
                && _mm.Tree.FindContaining(pieceStart) is { AnonVma: null })
            {
                // The kernel populates here, before the next VMA's turn, and after vma_modify_flags merged the piece
                // with its neighbours (the previous one first): a piece joined to a VMA with an anon_vma faults into
                // that one; otherwise the write faults' anon_vma_prepare picks a compatible neighbour's or a new one.
                // Either decides what the later merges may join.
                _editor.MergeWindow(pieceStart, pieceEnd);
                if (_mm.Tree.FindContaining(pieceStart) is { AnonVma: null } changedVma)
                {
                    AnonVmaPreparation.Prepare(_mm, changedVma);
                }
            }
            // A private writable VMA may upgrade exclusive anonymous PTEs in place; a shared one only pages that want no
            // write notification (shared memory and host memory, whose vm_page_prot is writable): the visitor decides per frame.
            bool vmaMayWrite = (newFlags & VmFlags.Write) != 0
                && ((newFlags & VmFlags.Shared) == 0 || vma.Backing is Backing.IPageCacheBacking or Backing.HostMemoryBacking);
            _mm.PageTable.ChangeProtection(pieceStart, pieceEnd, Vma.ProtectionOf(newFlags), vmaMayWrite, gather,
                MemoryFaultHandler.SoftDirtyEnabled(_mm.Settings, newFlags), _mm.Probes);
        }
        if (error == Errno.None && reached < end)
        {
            error = Errno.ENOMEM;
        }
        if (changed)
        {
            _editor.MergeWindow(start, Math.Min(end, reached));
            _mm.Tree.Publish();
            // No stale write (or any narrowed) permission survives the return: every Cpu flushes, and accesses that
            // began under the old translation finish before we return.
            gather.Finish(_mm.Probes);
            _editor.EndWriteSections();
        }
        _mm.ReturnGather(gather);
        return error;
    }

    private static VmFlags NewFlags(Vma vma, VmFlags access)
    {
        VmFlags old = vma.Flags;
        VmFlags flags = (old & ~VmFlags.AccessFlags) | access;
        if (flags == old)
        {
            // mprotect_fixup returns before any accounting when the protection does not change.
            return old;
        }
        // mprotect_fixup: a private mapping becoming writable is charged (VM_ACCOUNT) and stays charged, except that
        // an anonymous mapping with no anon_vma yet (never written) gives the charge back when it turns unwritable.
        if ((access & VmFlags.Write) != 0)
        {
            if ((old & (VmFlags.Account | VmFlags.Write | VmFlags.Shared | VmFlags.NoReserve)) == 0)
            {
                flags |= VmFlags.Account;
            }
        }
        else if ((old & VmFlags.Account) != 0 && vma.Backing.IsAnonymous && vma.AnonVma is null)
        {
            flags &= ~VmFlags.Account;
        }
        return flags;
    }
}
