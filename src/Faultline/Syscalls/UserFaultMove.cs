using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Syscalls;

/// <summary>
/// <c>UFFDIO_MOVE</c> (Linux 6.8, <c>move_pages</c>, <c>validate_move_areas</c>, <c>move_pages_pte</c>,
/// <c>move_present_pte</c>, <c>move_zeropage_pte</c>): moves the pages of a source range to a destination registered
/// with the channel, page by page, by moving the entries and re-owning the frames (<c>folio_move_anon_rmap</c>), not
/// by copying. Only exclusive anonymous pages move: a page shared copy-on-write with a forked relative, or pinned,
/// answers EBUSY, a populated destination EEXIST, a source hole ENOENT unless
/// <see cref="UserFaultMoveFlags.AllowSourceHoles"/> skips it. The ranges may overlap; each page moves in turn, as on
/// Linux.
/// </summary>
/// <remarks>
/// Both VMAs are held by their read locks (<c>uffd_move_lock</c>, see <see cref="UserFaultVmaLock"/>); a page moves
/// under the source anon_vma family's lock and both PTE locks, taken in table order (<c>double_pt_lock</c>) since two
/// moves of one address space may run at once. The source entry is cleared and every Cpu's translation of it flushed
/// before the destination entry is written, so no Cpu reaches the frame at both addresses. Thread safety: any thread.
/// </remarks>
internal sealed class UserFaultMove
{
    private readonly MemoryDescriptor _mm;
    private readonly UserFaultVmaLock _vmaLock;
    // Frames for the destination's page tables; guarded by its own monitor.
    private readonly FrameCache _frames;

    /// <summary>Moves in <paramref name="mm"/>, holding VMAs through <paramref name="vmaLock"/>.</summary>
    public UserFaultMove(MemoryDescriptor mm, UserFaultVmaLock vmaLock)
    {
        _mm = mm;
        _vmaLock = vmaLock;
        _frames = new FrameCache(mm.Memory);
    }

    /// <summary>
    /// <c>userfaultfd_move</c> → <c>move_pages</c>: moves [<paramref name="source"/>, + <paramref name="length"/>) to
    /// <paramref name="destination"/>, then wakes the faults waiting in what moved (unless
    /// <see cref="UserFaultMoveFlags.DontWake"/>). EAGAIN while a non-cooperative event is unread, or after a partial
    /// move (<paramref name="moved"/> says how much); EINVAL for a bad range or mode, for a shared or non-anonymous VMA,
    /// ranges not inside one VMA each, VMAs whose access or lock flags differ, a source not writable, or a destination
    /// not registered with this channel; ENOENT where a VMA is missing; per page EEXIST, ENOENT, EBUSY, EFAULT, ENOMEM.
    /// </summary>
    public Errno Move(UserFaultContext context, ulong destination, ulong source, ulong length, UserFaultMoveFlags flags, out ulong moved)
    {
        moved = 0;
        if (context.MappingsChanging)
        {
            return Errno.EAGAIN;
        }
        if (UserFaultRegistration.ValidateRange(_mm, destination, length) != Errno.None
            || UserFaultRegistration.ValidateRange(_mm, source, length) != Errno.None
            || (flags & ~(UserFaultMoveFlags.DontWake | UserFaultMoveFlags.AllowSourceHoles)) != 0)
        {
            return Errno.EINVAL;
        }
        Errno error = _vmaLock.LockPair(destination, source, out UserFaultHeldVma dst, out UserFaultHeldVma src);
        if (error != Errno.None)
        {
            return error;
        }
        try
        {
            // Re-read with the VMAs held, as move_pages does under map_changing_lock.
            if (context.MappingsChanging)
            {
                return Errno.EAGAIN;
            }
            error = Validate(context, dst.Vma, src.Vma, destination, source, length);
            if (error != Errno.None)
            {
                return error;
            }
            bool allowHoles = (flags & UserFaultMoveFlags.AllowSourceHoles) != 0;
            MmuGather gather = _mm.RentGather();
            try
            {
                for (; moved < length; moved += PageGeometry.PageSize)
                {
                    error = MovePage(dst.Vma, src.Vma, destination + moved, source + moved, allowHoles, gather);
                    if (error != Errno.None)
                    {
                        break;
                    }
                }
            }
            finally
            {
                _mm.ReturnGather(gather);
            }
        }
        finally
        {
            _vmaLock.UnlockPair(dst, src);
        }
        if (moved == 0)
        {
            return error;
        }
        if ((flags & UserFaultMoveFlags.DontWake) == 0)
        {
            context.Wake(destination, moved);
        }
        return moved == length ? Errno.None : Errno.EAGAIN;
    }

    /// <summary>Returns the cached frames to the arena (the channel is closing).</summary>
    public void Drain()
    {
        lock (_frames)
        {
            _frames.DrainAll();
        }
    }

    // move_pages' range checks, then validate_move_areas.
    private static Errno Validate(UserFaultContext context, Vma dst, Vma src, ulong destination, ulong source, ulong length)
    {
        if ((src.Flags & VmFlags.Shared) != 0 || source + length > src.End || (dst.Flags & VmFlags.Shared) != 0 || destination + length > dst.End)
        {
            return Errno.EINVAL;
        }
        const VmFlags access = VmFlags.Read | VmFlags.Write | VmFlags.Exec;
        // Same access and lock state; only writable VMAs move; nothing that maps host pages or devices.
        if ((src.Flags & access) != (dst.Flags & access) || (src.Flags & VmFlags.Locked) != (dst.Flags & VmFlags.Locked)
            || (src.Flags & VmFlags.Write) == 0 || ((src.Flags | dst.Flags) & (VmFlags.PfnMap | VmFlags.Io)) != 0)
        {
            return Errno.EINVAL;
        }
        // The destination must be registered with this channel, and both VMAs anonymous.
        if (!ReferenceEquals(dst.UserFault, context) || !src.Backing.IsAnonymous || !dst.Backing.IsAnonymous)
        {
            return Errno.EINVAL;
        }
        return Errno.None;
    }

    // move_pages_pte for one page.
    private Errno MovePage(Vma dst, Vma src, ulong dstAddress, ulong srcAddress, bool allowHoles, MmuGather gather)
    {
        PageTable table = _mm.PageTable;
        // The source's tables stay while its VMA is read-locked; a missing one is a hole.
        WalkStatus walked = table.WalkLockless(srcAddress, out PteLocation srcAt, out _);
        if (walked is WalkStatus.UpperNone or WalkStatus.PmdNone)
        {
            return allowHoles ? Errno.None : Errno.ENOENT;
        }
        if (walked != WalkStatus.Ok)
        {
            // A huge PMD: move_pages splits it first, which comes with transparent huge pages.
            return Errno.EBUSY;
        }
        PteLocation dstAt;
        lock (_frames)
        {
            if (!table.WalkAllocate(dstAddress, _frames, out dstAt))
            {
                return Errno.ENOMEM;
            }
        }
        _mm.Probes.Hit(ProbePoint.UserFaultMoveBeforePteLocks);
        AnonVma? family = src.AnonVma;
        family?.EnterFamilyLock();
        // double_pt_lock: the lower table first; one lock when both entries share a table.
        long first = Math.Min(srcAt.PteTable, dstAt.PteTable), second = Math.Max(srcAt.PteTable, dstAt.PteTable);
        SpinWord.Enter(ref table.PteLock(first));
        if (second != first)
        {
            SpinWord.Enter(ref table.PteLock(second));
        }
        try
        {
            return MoveEntry(dst, dstAddress, srcAddress, srcAt, dstAt, allowHoles, gather);
        }
        finally
        {
            if (second != first)
            {
                SpinWord.Exit(ref table.PteLock(second));
            }
            SpinWord.Exit(ref table.PteLock(first));
            family?.ExitFamilyLock();
        }
    }

    // Under both PTE locks: the checks of move_pages_pte, then move_zeropage_pte or move_present_pte.
    private Errno MoveEntry(Vma dst, ulong dstAddress, ulong srcAddress, in PteLocation srcAt, in PteLocation dstAt, bool allowHoles,
        MmuGather gather)
    {
        PageTable table = _mm.PageTable;
        ulong srcPte = table.ReadPte(srcAt);
        if (!Pte.IsNone(table.ReadPte(dstAt)))
        {
            return Errno.EEXIST;
        }
        if (Pte.IsNone(srcPte))
        {
            return allowHoles ? Errno.None : Errno.ENOENT;
        }
        if (!Pte.IsPresent(srcPte))
        {
            // Linux moves a swap entry; nothing else that is not present can move.
            return Errno.EFAULT;
        }
        long pfn = Pte.Frame(srcPte);
        ulong entry;
        if (pfn == PhysicalMemory.ZeroFrame)
        {
            entry = Pte.MakeLeaf(PhysicalMemory.ZeroFrame, dst.PageProtection, writable: false, special: true) | Pte.Accessed;
        }
        else
        {
            PhysicalMemory memory = _mm.Memory;
            // Only an exclusive anonymous page moves: one shared with a forked relative, or pinned for I/O, stays.
            if (memory.Info(pfn).Kind != FrameKind.Anonymous || !memory.HasFlags(pfn, FrameFlags.AnonExclusive) || memory.IsPinned(pfn))
            {
                return Errno.EBUSY;
            }
            // Follow mremap: the entry is dirty (and soft-dirty) and writable at its new place.
            entry = Pte.MakeLeaf(pfn, dst.PageProtection, writable: (dst.Flags & VmFlags.Write) != 0, special: false) | Pte.Accessed | Pte.DirtyBits;
        }
        // ptep_clear_flush: no Cpu keeps a translation of the source once the destination entry is visible.
        table.WritePte(srcAt, 0);
        gather.NoteTranslationChange(srcAddress);
        gather.FlushTlb(_mm.Probes);
        if (pfn != PhysicalMemory.ZeroFrame)
        {
            // folio_move_anon_rmap and the new index: the reverse map finds the frame in the destination VMA. The
            // source family's lock keeps a reverse-map walk from reading the owner half-changed.
            ref FrameInfo info = ref _mm.Memory.Info(pfn);
            info.Mapping = dst.AnonVma;
            info.Index = dst.PageOffset + ((dstAddress - dst.Start) >> PageGeometry.PageShift);
        }
        // Release store: the frame's new owner is visible before the entry (set_pte_at).
        table.WritePte(dstAt, entry);
        return Errno.None;
    }
}
