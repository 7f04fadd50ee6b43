using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mremap</c> (<c>SYSCALL_DEFINE5(mremap)</c>, <c>do_mremap</c>, <c>check_mremap_params</c>, <c>check_prep_vma</c>,
/// <c>mremap_at</c>, <c>mremap_to</c>, <c>remap_move</c>, <c>move_vma</c>) with Linux's checks, errno values and
/// partial effects: a shrink unmaps the tail, a growth extends the VMA in place when the range after it is free, and
/// otherwise (with <see cref="RemapFlags.MayMove"/>, or always with <see cref="RemapFlags.Fixed"/> or
/// <see cref="RemapFlags.DontUnmap"/>) a copy of the VMA is inserted at the destination and the page tables are moved
/// to it, not the pages copied.
/// </summary>
/// <remarks>
/// The whole call runs under the mmap write lock (a plain shrink downgrades it for the zap, as munmap does). A move
/// opens the source VMA's write section first (<c>vma_start_write</c> and the SPF sequence) and inserts the copy
/// write-locked with its sequence open, so no fault on the VMA-lock or speculative path proceeds on either side until
/// the new tree is published and the sequences close; entries move under the page-table locks with the old range's TLB
/// entries flushed before the locks go (<see cref="PageTableMover"/>).
/// </remarks>
internal sealed class MremapSyscall
{
    private const RemapFlags KnownFlags = RemapFlags.MayMove | RemapFlags.Fixed | RemapFlags.DontUnmap;
    private const RemapFlags NewAddressFlags = RemapFlags.Fixed | RemapFlags.DontUnmap;

    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly RegionUnmapper _unmapper;
    private readonly UnmappedAreaSearch _search;
    private readonly PagePopulator _populator;
    private readonly object _owner;
    // The user-fault events of the call in progress (the kernel's uf_unmap_early, uf and uf_unmap lists), posted in that
    // order once the lock is dropped. Written under the mmap write lock, or after a shrink's downgrade under the read
    // lock the same call still holds (which keeps every other mremap out); the call takes them before it unlocks.
    private List<UserFaultNotice>? _unmapEarly, _remapEvents, _unmapLate;

    /// <summary><c>mremap</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MremapSyscall(MemoryDescriptor mm, VmaEditor editor, RegionUnmapper unmapper, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _unmapper = unmapper;
        _search = new UnmappedAreaSearch(mm);
        _populator = populator;
        _owner = owner;
    }

    /// <summary>
    /// Resizes or moves [<paramref name="oldAddress"/>, + <paramref name="oldLength"/>); <paramref name="remapped"/> is
    /// the mapping's start afterwards. A locked mapping that grew is then populated (errors ignored).
    /// </summary>
    public Errno Remap(ulong oldAddress, ulong oldLength, ulong newLength, RemapFlags flags, ulong newAddress, out ulong remapped)
    {
        remapped = 0;
        // do_mremap aligns both lengths first; PAGE_ALIGN wraps a length within a page of the top to 0.
        oldLength = PageGeometry.PageAlign(oldLength);
        newLength = PageGeometry.PageAlign(newLength);
        Errno invalid = CheckParameters(oldAddress, oldLength, newLength, flags, newAddress);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        _mm.EnterWriteUnlessExiting(_owner);
        bool writeHeld = true;
        bool populate = false;
        Errno result;
        try
        {
            // check_mremap_params: a move to a given address must stay well below the map count limit, since it
            // may split VMAs at both ends of both ranges before it could fail.
            if ((flags & NewAddressFlags) != 0 && _mm.Tree.Count + 2 >= _mm.Settings.MaxMapCount - 3)
            {
                return Errno.ENOMEM;
            }
            if ((flags & RemapFlags.Fixed) != 0 && oldLength == newLength)
            {
                result = RemapMove(oldAddress, oldLength, flags, newAddress, out remapped);
            }
            else
            {
                Vma? vma = Lookup(oldAddress);
                result = CheckVma(vma, oldAddress, oldLength, newLength, flags);
                if (result != Errno.None)
                {
                    return result;
                }
                // check_prep_vma's populate_expand: a locked mapping that grows is faulted in afterwards.
                populate = (vma!.Flags & VmFlags.Locked) != 0 && newLength > oldLength;
                result = (flags & NewAddressFlags) != 0
                    ? RemapTo(vma, oldAddress, oldLength, newLength, flags, newAddress, out remapped)
                    : RemapAt(vma, oldAddress, oldLength, newLength, flags, ref writeHeld, out remapped);
            }
        }
        finally
        {
            (List<UserFaultNotice>? early, List<UserFaultNotice>? remaps, List<UserFaultNotice>? late) = (_unmapEarly, _remapEvents, _unmapLate);
            (_unmapEarly, _remapEvents, _unmapLate) = (null, null, null);
            if (writeHeld)
            {
                _mm.MmapLock.ExitWrite();
            }
            else
            {
                _mm.MmapLock.ExitRead();
            }
            // do_mremap: userfaultfd_unmap_complete(uf_unmap_early), mremap_userfaultfd_complete, then uf_unmap.
            UserFaultEvents.Complete(early);
            UserFaultEvents.Complete(remaps);
            UserFaultEvents.Complete(late);
        }
        if (result == Errno.None && populate)
        {
            _populator.Populate(remapped + oldLength, remapped + newLength, ignoreErrors: true);
        }
        return result;
    }

    // check_mremap_params (lengths already page-aligned): everything here is EINVAL.
    private static Errno CheckParameters(ulong oldAddress, ulong oldLength, ulong newLength, RemapFlags flags, ulong newAddress)
    {
        if ((flags & ~KnownFlags) != 0 || (oldAddress & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        // A zero old length is the historical "duplicate a shared mapping" request; a zero new length means nothing.
        if (newLength == 0 || newLength > PageGeometry.TaskSize)
        {
            return Errno.EINVAL;
        }
        if ((flags & NewAddressFlags) == 0)
        {
            return Errno.None;
        }
        if (newAddress > PageGeometry.TaskSize - newLength || (newAddress & PageGeometry.PageOffsetMask) != 0
            || (flags & RemapFlags.MayMove) == 0)
        {
            return Errno.EINVAL;
        }
        // MREMAP_DONTUNMAP cannot resize, and the destination may not overlap the source (vrm_overlaps).
        if ((flags & RemapFlags.DontUnmap) != 0 && oldLength != newLength)
        {
            return Errno.EINVAL;
        }
        return oldAddress + oldLength > newAddress && newAddress + newLength > oldAddress ? Errno.EINVAL : Errno.None;
    }

    // vma_lookup: the VMA containing the address, in the writer's version of the tree.
    private Vma? Lookup(ulong address) => _mm.Tree.FindFirstEndingAbove(address) is { } vma && vma.Start <= address ? vma : null;

    // check_prep_vma for one VMA and the range [address, address + oldLength) in it.
    private Errno CheckVma(Vma? vma, ulong address, ulong oldLength, ulong newLength, RemapFlags flags)
    {
        if (vma is null)
        {
            return Errno.EFAULT;
        }
        if ((vma.Flags & VmFlags.Sealed) != 0)
        {
            return Errno.EPERM;
        }
        // vrm_will_map_new: only a growth or a move maps new address space; a shrink or a no-op needs nothing more.
        if (newLength <= oldLength && (flags & NewAddressFlags) == 0)
        {
            return Errno.None;
        }
        // Duplicating a private mapping (old length 0) would make a fresh mapping unrelated to the original.
        if (oldLength == 0 && (vma.Flags & (VmFlags.Shared | VmFlags.MayShare)) == 0)
        {
            return Errno.EINVAL;
        }
        // A shrink may unmap past the VMA's end; what moves must lie inside it.
        ulong kept = Math.Min(oldLength, newLength);
        if (kept > vma.End - address)
        {
            return Errno.EFAULT;
        }
        if (newLength == kept)
        {
            return Errno.None;
        }
        ulong pageOffset = vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift);
        if (pageOffset + (newLength >> PageGeometry.PageShift) < pageOffset)
        {
            return Errno.EINVAL;
        }
        // vma_to_resize: host memory and devices (VM_DONTEXPAND | VM_PFNMAP) never grow.
        if ((vma.Flags & (VmFlags.DontExpand | VmFlags.PfnMap)) != 0)
        {
            return Errno.EFAULT;
        }
        // mlock_future_ok for the growth of a locked mapping.
        return _mm.MayLockMore(vma.Flags, newLength - oldLength) ? Errno.None : Errno.EAGAIN;
    }

    // mremap_at: no new address was asked for; a no-op, an in-place shrink, or a growth (in place, else moved).
    private Errno RemapAt(Vma vma, ulong address, ulong oldLength, ulong newLength, RemapFlags flags, ref bool writeHeld, out ulong remapped)
    {
        remapped = 0;
        if (newLength == oldLength)
        {
            remapped = address;
            return Errno.None;
        }
        if (newLength < oldLength)
        {
            // shrink_vma with the lock dropped: munmap of the tail, which may reach past the VMA.
            Errno shrunk = UnmapChecked(address + newLength, address + oldLength, downgrade: true, ref writeHeld, ref _unmapLate);
            remapped = shrunk == Errno.None ? address : 0;
            return shrunk;
        }
        ulong delta = newLength - oldLength;
        // expand_vma: in place when the range reaches the VMA's end and the space after it is free (vma_expandable).
        if (address + oldLength == vma.End && IsExpandable(vma, delta))
        {
            ExpandInPlace(vma, vma.End + delta);
            remapped = address;
            return Errno.None;
        }
        if ((flags & RemapFlags.MayMove) == 0)
        {
            return Errno.ENOMEM;
        }
        // get_unmapped_area of the move: a private anonymous VMA of whole PMDs is THP-aligned when it can be.
        ulong? aligned = _mm.Settings.ThpAlignedPlacement && vma.Backing is Backing.AnonymousBacking && (vma.Flags & VmFlags.MayShare) == 0
            && (newLength & (PageGeometry.PmdSize - 1)) == 0
            ? _search.FindPmdAligned(newLength, below2GiB: false)
            : null;
        if ((aligned ?? _search.Find(0, newLength)) is not ulong target)
        {
            return Errno.ENOMEM;
        }
        return MoveVma(vma, address, oldLength, target, newLength, flags, out remapped);
    }

    // mremap_to: a new address is implied (MREMAP_FIXED, or MREMAP_DONTUNMAP with the address as a hint).
    private Errno RemapTo(Vma vma, ulong address, ulong oldLength, ulong newLength, RemapFlags flags, ulong newAddress, out ulong remapped)
    {
        remapped = 0;
        bool ignored = true;
        if ((flags & RemapFlags.Fixed) != 0)
        {
            // Like MAP_FIXED: whatever is mapped at the destination goes first (sealed VMAs refuse, EPERM).
            Errno cleared = UnmapChecked(newAddress, newAddress + newLength, downgrade: false, ref ignored, ref _unmapEarly);
            if (cleared != Errno.None)
            {
                return cleared;
            }
            if (Lookup(address) is not { } found)
            {
                return Errno.EFAULT;
            }
            vma = found;
        }
        if (newLength < oldLength)
        {
            // shrink_vma keeping the lock, then the kept part moves.
            Errno shrunk = UnmapChecked(address + newLength, address + oldLength, downgrade: false, ref ignored, ref _unmapLate);
            if (shrunk != Errno.None)
            {
                return shrunk;
            }
            if (Lookup(address) is not { } found)
            {
                return Errno.EFAULT;
            }
            vma = found;
            oldLength = newLength;
        }
        // vrm_set_new_addr: get_unmapped_area with MAP_FIXED, or with the address as a hint.
        ulong target;
        if ((flags & RemapFlags.Fixed) != 0)
        {
            if (newAddress < _mm.Settings.MmapMinAddress)
            {
                return Errno.EPERM;
            }
            target = newAddress;
        }
        else if (_search.Find(newAddress, newLength) is ulong found)
        {
            target = found;
        }
        else
        {
            return Errno.ENOMEM;
        }
        return MoveVma(vma, address, oldLength, target, newLength, flags, out remapped);
    }

    // remap_move: MREMAP_FIXED with equal lengths moves every VMA in the range, keeping the gaps between them. A VMA
    // that fails ends the walk with its errno; those before it stay moved (Linux's partial effect).
    private Errno RemapMove(ulong start, ulong length, RemapFlags flags, ulong newAddress, out ulong remapped)
    {
        remapped = 0;
        ulong end = start + length;
        ulong cursor = start, target = newAddress, lastEnd = 0;
        bool seen = false;
        Errno result = Errno.EFAULT;
        while (_mm.Tree.FindFirstEndingAbove(cursor) is { } vma && vma.Start < end)
        {
            if (!seen && start < vma.Start)
            {
                return Errno.EFAULT;
            }
            ulong address = Math.Max(vma.Start, start);
            ulong pieceLength = Math.Min(end, vma.End) - address;
            ulong offset = seen ? vma.Start - lastEnd : 0;
            lastEnd = vma.End;
            cursor = vma.End;
            Errno piece = CheckVma(vma, address, pieceLength, pieceLength, flags);
            if (piece == Errno.None)
            {
                piece = RemapTo(vma, address, pieceLength, pieceLength, flags, target + offset, out ulong moved);
                if (piece == Errno.None)
                {
                    if (!seen)
                    {
                        remapped = moved;
                        result = Errno.None;
                    }
                    target = moved + pieceLength;
                }
            }
            if (piece != Errno.None)
            {
                remapped = 0;
                return piece;
            }
            seen = true;
        }
        return result;
    }

    // vma_expandable: no VMA in the growth, and get_unmapped_area(MAP_FIXED) would accept the grown range.
    private bool IsExpandable(Vma vma, ulong delta)
    {
        ulong end = vma.End + delta;
        if (end < vma.End || end - vma.Start > PageGeometry.TaskSize || vma.Start > PageGeometry.TaskSize - (end - vma.Start))
        {
            return false;
        }
        return _mm.Tree.FindFirstEndingAbove(vma.End) is not { } next || next.Start >= end;
    }

    // expand_vma_in_place (vma_merge_extend): the VMA grows to newEnd and merges with the next one if compatible.
    private void ExpandInPlace(Vma vma, ulong newEnd)
    {
        ulong delta = newEnd - vma.End;
        _editor.Expand(vma, newEnd);
        _editor.MergeWindow(newEnd, newEnd);
        _mm.Tree.Publish();
        _editor.EndWriteSections();
        if ((vma.Flags & VmFlags.Locked) != 0)
        {
            _mm.LockedPages += (long)(delta >> PageGeometry.PageShift);
        }
    }

    // move_vma: prep_move_vma, copy_vma, move_page_tables, then unmap the source (or, for MREMAP_DONTUNMAP, leave it
    // mapped and empty). If the tables cannot all be moved, the moved part goes back and the new VMA is unmapped.
    private Errno MoveVma(Vma vma, ulong address, ulong oldLength, ulong target, ulong newLength, RemapFlags flags, out ulong remapped)
    {
        remapped = 0;
        if (_mm.Tree.Count >= _mm.Settings.MaxMapCount - 3)
        {
            return Errno.ENOMEM;
        }
        if ((vma.Start != address && !VmaEditor.MaySplitAt(vma, address))
            || (vma.End != address + oldLength && !VmaEditor.MaySplitAt(vma, address + oldLength)))
        {
            return Errno.EINVAL;
        }
        VmFlags vmFlags = vma.Flags;
        // vma_start_write on the source before anything moves: VMA-lock readers drain and are kept out, and the open
        // sequence makes a speculative fault that found it retry.
        _editor.BeginWrite(vma);
        // copy_vma: the copy keeps the backing, policy, anon_vma and page offset, so the moved frames' reverse-map
        // index stays right; an anonymous VMA that never faulted has no pages, and its offset starts afresh.
        ulong pageOffset = vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift);
        if (vma.Backing.IsAnonymous && vma.AnonVma is null)
        {
            pageOffset = target >> PageGeometry.PageShift;
        }
        VmFlags createdFlags = vmFlags;
        Areas.UserFaultContext? userFault = UserFaultEvents.PrepareRemap(vma, ref createdFlags);
        Vma created = _mm.CreateVma(target, target + newLength, pageOffset, createdFlags, vma.Backing, vma.Policy);
        created.AnonVma = vma.AnonVma;
        created.UserFault = userFault;
        _editor.InsertAndMerge(created);
        ulong moved = MovePageTables(vma.AnonVma, address, target, oldLength);
        bool failed = moved < oldLength;
        if (failed)
        {
            MovePageTables(vma.AnonVma, target, address, moved);
        }
        // vrm_stat_account: the new range is counted as locked; the unmap below takes the old one off.
        if ((vmFlags & VmFlags.Locked) != 0)
        {
            _mm.LockedPages += (long)(newLength >> PageGeometry.PageShift);
        }
        if (failed)
        {
            UserFaultEvents.PrepareUnmap(_mm, target, target + newLength, ref _unmapLate);
            _unmapper.Unmap(target, target + newLength, downgrade: false);
            return Errno.ENOMEM;
        }
        if ((flags & RemapFlags.DontUnmap) != 0)
        {
            CompleteDontUnmap(address, oldLength, target);
            _mm.Tree.Publish();
            _editor.EndWriteSections();
        }
        else if (oldLength != 0)
        {
            // unmap_source_vma: the source still names its channel, so its unmap is reported too.
            UserFaultEvents.PrepareUnmap(_mm, address, address + oldLength, ref _unmapLate);
            _unmapper.Unmap(address, address + oldLength, downgrade: false);
        }
        else
        {
            // An old length of 0 duplicates a shared mapping: nothing moved and nothing to unmap.
            _mm.Tree.Publish();
            _editor.EndWriteSections();
        }
        UserFaultEvents.PrepareRemapEvent(userFault, address, target, oldLength, ref _remapEvents);
        remapped = target;
        return Errno.None;
    }

    // move_page_tables under the anon_vma family's lock, so a reverse-map walk sees each frame at its old or its new
    // address (the kernel's take_rmap_locks); the frames for new tables come from a cache drained afterwards.
    private ulong MovePageTables(AnonVma? anonVma, ulong from, ulong to, ulong length)
    {
        if (length == 0)
        {
            return 0;
        }
        var frames = new FrameCache(_mm.Memory);
        var gather = new MmuGather(_mm.Memory, _mm.Rcu, _mm.GatherBatchLimit);
        anonVma?.EnterFamilyLock();
        try
        {
            return _mm.PageTable.MoveRange(from, to, length, frames, gather, _mm.Probes);
        }
        finally
        {
            anonVma?.ExitFamilyLock();
            frames.DrainAll();
        }
    }

    // dontunmap_complete: the old VMA (the one now holding the old range) loses VM_LOCKED/VM_LOCKONFAULT, and when the
    // whole of it moved to another VMA its anon_vma links go (unlink_anon_vmas). mm->locked_vm is left as it is.
    private void CompleteDontUnmap(ulong address, ulong length, ulong target)
    {
        Vma old = Lookup(address)!;
        Vma? moved = Lookup(target);
        VmFlags flags = old.Flags & ~VmFlags.LockedMask;
        bool unlink = !ReferenceEquals(old, moved) && old.Start == address && old.End == address + length && old.AnonVma is not null;
        if (flags == old.Flags && !unlink)
        {
            return;
        }
        _editor.BeginWrite(old);
        _editor.Detach(old);
        Vma replaced = _editor.CopyOf(old, old.Start, old.End, flags);
        if (unlink)
        {
            replaced.AnonVma = null;
        }
        _editor.Attach(replaced);
    }

    // do_vmi_munmap's checks, in munmap's order (map count, seal, may_split), then the unmap; nothing mapped is fine.
    private Errno UnmapChecked(ulong start, ulong end, bool downgrade, ref bool writeHeld, ref List<UserFaultNotice>? unmapEvents)
    {
        if (_mm.Tree.FindFirstEndingAbove(start) is not { } first || first.Start >= end)
        {
            return Errno.None;
        }
        if (_unmapper.CountAfterUnmap(start, end) > _mm.Settings.MaxMapCount)
        {
            return Errno.ENOMEM;
        }
        if (_unmapper.RefuseSealed(start, end))
        {
            return Errno.EPERM;
        }
        if (!_editor.EdgesMaySplit(start, end))
        {
            return Errno.EINVAL;
        }
        UserFaultEvents.PrepareUnmap(_mm, start, end, ref unmapEvents);
        _unmapper.Unmap(start, end, downgrade);
        if (downgrade)
        {
            writeHeld = false;
        }
        return Errno.None;
    }
}
