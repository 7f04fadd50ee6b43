using Faultline.Areas;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mprotect</c> (<c>do_mprotect_pkey</c>, <c>mprotect_fixup</c>, <c>change_protection</c>) with Linux's checks and
/// errno values. One intended difference: a range with a hole fails with ENOMEM and changes nothing (Linux changes
/// the VMAs before the hole).
/// </summary>
internal sealed class MprotectSyscall
{
    private const Protection KnownProtection = Protection.Read | Protection.Write | Protection.Execute | Protection.Semaphore
        | Protection.GrowsDown | Protection.GrowsUp;

    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly object _owner;

    /// <summary><c>mprotect</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MprotectSyscall(MemoryDescriptor mm, VmaEditor editor, object owner)
    {
        _mm = mm;
        _editor = editor;
        _owner = owner;
    }

    /// <summary>Changes the protection of [address, address + length).</summary>
    public Errno Protect(ulong address, ulong length, Protection protection)
    {
        _mm.SharedCounters.AddShared(VmEvent.ProtectCall);
        if ((address & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        if ((protection & ~KnownProtection) != 0
            || (protection & (Protection.GrowsDown | Protection.GrowsUp)) == (Protection.GrowsDown | Protection.GrowsUp))
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
        VmFlags access = VmFlagBits.CalcVmProtBits(protection);
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            List<Vma> affected = _mm.Tree.Intersecting(address, end);
            if (affected.Count == 0 || affected[0].Start > address)
            {
                return Errno.ENOMEM;
            }
            if ((protection & Protection.GrowsDown) != 0)
            {
                if ((affected[0].Flags & VmFlags.GrowsDown) == 0)
                {
                    return Errno.EINVAL;
                }
                address = affected[0].Start;
            }
            else if ((protection & Protection.GrowsUp) != 0)
            {
                return Errno.EINVAL;
            }
            for (int i = 1; i < affected.Count; i++)
            {
                if (affected[i].Start != affected[i - 1].End)
                {
                    // Linux changes the VMAs before the hole and then fails; Faultline changes nothing (a failed call
                    // leaves the address space as it was). The conformance suite documents this difference.
                    return Errno.ENOMEM;
                }
            }
            if (affected[^1].End < end)
            {
                return Errno.ENOMEM;
            }
            int splits = (affected[0].Start < address && NewFlags(affected[0], access) != affected[0].Flags ? 1 : 0)
                + (affected[^1].End > end && NewFlags(affected[^1], access) != affected[^1].Flags ? 1 : 0);
            if (splits > 0 && _mm.Tree.Count + splits > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if ((affected[0].Start < address && NewFlags(affected[0], access) != affected[0].Flags && !VmaEditor.MaySplitAt(affected[0], address))
                || (affected[^1].End > end && NewFlags(affected[^1], access) != affected[^1].Flags && !VmaEditor.MaySplitAt(affected[^1], end)))
            {
                return Errno.EINVAL;
            }
            ChangeProtection(affected, address, end, access);
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        return Errno.None;
    }

    // mprotect_fixup over each VMA: unchanged VMAs stay; changed ones are split at the range edges and replaced and
    // their PTEs rewritten; then neighbours are merged as vma_modify_flags would.
    private void ChangeProtection(List<Vma> affected, ulong start, ulong end, VmFlags access)
    {
        var gather = new MmuGather(_mm.Memory, _mm.Rcu, _mm.GatherBatchLimit);
        bool changed = false;
        foreach (Vma vma in affected)
        {
            VmFlags newFlags = NewFlags(vma, access);
            if (newFlags == vma.Flags)
            {
                continue;
            }
            changed = true;
            _editor.ReplaceFlags(vma, start, end, newFlags);
            bool vmaMayWrite = (newFlags & (VmFlags.Write | VmFlags.Shared)) == VmFlags.Write;
            _mm.PageTable.ChangeProtection(Math.Max(start, vma.Start), Math.Min(end, vma.End), Vma.ProtectionOf(newFlags), vmaMayWrite, gather);
        }
        if (!changed)
        {
            return;
        }
        _editor.MergeWindow(start, end);
        _mm.Tree.Publish();
        // No stale write (or any narrowed) permission survives the return: every Cpu flushes, and accesses that
        // began under the old translation finish before we return.
        gather.Finish(_mm.Probes);
        _editor.EndWriteSections();
    }

    private static VmFlags NewFlags(Vma vma, VmFlags access)
    {
        VmFlags old = vma.Flags;
        VmFlags flags = (old & ~VmFlags.AccessFlags) | access;
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
