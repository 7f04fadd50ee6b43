using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline;

/// <summary>
/// The control plane: <c>mmap</c>, <c>munmap</c>, <c>mprotect</c> with Linux's checks, errno values, splitting and
/// merging. Every operation validates everything first and then cannot fail, so a failed call changes nothing.
/// </summary>
/// <remarks>
/// Writers hold the mmap lock for write. Before changing or removing a VMA they write-lock it for per-VMA-lock readers
/// (<c>vma_start_write</c>) and open its SPF sequence write section; a VMA whose range or flags change is replaced by
/// a new one (the old one is detached), so a reader that found the old one either fails its lock or sees the
/// sequence move. The new tree version is published with one release store before page tables are touched.
/// </remarks>
internal sealed class MappingOperations
{
    private const Protection KnownProtection = Protection.Read | Protection.Write | Protection.Execute | Protection.Semaphore
        | Protection.GrowsDown | Protection.GrowsUp;

    private readonly MemoryDescriptor _mm;
    private readonly List<Vma> _writeLocked = [];

    /// <summary>Operations over <paramref name="mm"/>.</summary>
    public MappingOperations(MemoryDescriptor mm) => _mm = mm;

    /// <summary><c>mmap</c> of anonymous memory.</summary>
    public Errno Map(ulong address, ulong length, Protection protection, MapFlags flags, out ulong mapped)
    {
        mapped = 0;
        _mm.SharedCounters.AddShared(VmEvent.MapCall);
        Errno invalid = ValidateMap(ref address, ref length, flags);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        return InsertMapping(address, length, VmFlagsFor(protection, flags), flags, AnonymousBacking.Instance, null, out mapped);
    }

    /// <summary>
    /// <c>mmap</c> of <paramref name="backing"/> from page <paramref name="pageOffset"/> on (a file mapping's
    /// <c>vm_pgoff</c>), private or shared.
    /// </summary>
    public Errno MapBacking(ulong address, ulong length, Protection protection, MapFlags flags, IBacking backing, ulong pageOffset,
        out ulong mapped)
    {
        mapped = 0;
        _mm.SharedCounters.AddShared(VmEvent.MapCall);
        if ((flags & MapFlags.Anonymous) != 0 || backing.IsAnonymous || ((int)flags & 0x0f) is not (1 or 2 or 3))
        {
            return Errno.EINVAL;
        }
        Errno invalid = ValidateRange(ref address, ref length, flags);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        // do_mmap: the last page offset must not wrap.
        if (pageOffset + (length >> PageGeometry.PageShift) < pageOffset)
        {
            return Errno.EOVERFLOW;
        }
        return InsertMapping(address, length, VmFlagsFor(protection, flags), flags, backing, pageOffset, out mapped);
    }

    // mmap_region: places the range, unmaps what MAP_FIXED replaces and inserts the new VMA (anonymous memory's page
    // offset is its start in pages, known only once placed).
    private Errno InsertMapping(ulong address, ulong length, VmFlags vmFlags, MapFlags flags, IBacking backing, ulong? pageOffset,
        out ulong mapped)
    {
        mapped = 0;
        EnterWriteUnlessExiting();
        try
        {
            Errno placed = Place(address, length, flags, out ulong start);
            if (placed != Errno.None)
            {
                return placed;
            }
            ulong end = start + length;
            // do_mmap: refuse when the count is already past the limit; a MAP_FIXED that splits a VMA needs room too.
            if (_mm.Tree.Count > _mm.Settings.MaxMapCount || CountAfterUnmap(start, end) > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if (!EdgesMaySplit(start, end))
            {
                return Errno.EINVAL;
            }
            if (_mm.Tree.FindFirstEndingAbove(start) is { } overlap && overlap.Start < end)
            {
                RemoveRange(start, end, downgrade: false);
            }
            Vma created = _mm.CreateVma(start, end, pageOffset ?? start >> PageGeometry.PageShift, vmFlags, backing);
            InsertAndMerge(created);
            _mm.Tree.Publish();
            EndWriteSections();
            mapped = start;
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        return Errno.None;
    }

    /// <summary><c>munmap</c>.</summary>
    public Errno Unmap(ulong address, ulong length)
    {
        _mm.SharedCounters.AddShared(VmEvent.UnmapCall);
        if ((address & PageGeometry.PageOffsetMask) != 0 || length == 0 || address > PageGeometry.TaskSize)
        {
            return Errno.EINVAL;
        }
        ulong aligned = AlignUp(length);
        if (aligned == 0 || aligned > PageGeometry.TaskSize - address)
        {
            return Errno.EINVAL;
        }
        ulong end = address + aligned;
        EnterWriteUnlessExiting();
        bool writeHeld = true;
        try
        {
            List<Vma> affected = _mm.Tree.Intersecting(address, end);
            if (affected.Count == 0)
            {
                return Errno.None;
            }
            // A split in the middle of one VMA adds one; do_vmi_align_munmap refuses it at the limit.
            if (CountAfterUnmap(address, end) > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if (!EdgesMaySplit(address, end))
            {
                return Errno.EINVAL;
            }
            RemoveRange(address, end, downgrade: true);
            writeHeld = false;
        }
        finally
        {
            if (writeHeld)
            {
                _mm.MmapLock.ExitWrite();
            }
            else
            {
                _mm.MmapLock.ExitRead();
            }
        }
        return Errno.None;
    }

    /// <summary><c>mprotect</c>.</summary>
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
        ulong aligned = AlignUp(length);
        ulong end = address + aligned;
        if (aligned == 0 || end <= address)
        {
            return Errno.ENOMEM;
        }
        VmFlags access = VmFlagsFor(protection & (Protection.Read | Protection.Write | Protection.Execute), 0) & VmFlags.AccessFlags;
        EnterWriteUnlessExiting();
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
            if ((affected[0].Start < address && NewFlags(affected[0], access) != affected[0].Flags && !MaySplitAt(affected[0], address))
                || (affected[^1].End > end && NewFlags(affected[^1], access) != affected[^1].Flags && !MaySplitAt(affected[^1], end)))
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

    // mprotect_fixup over each VMA: unchanged VMAs stay; changed ones are split at the range edges and replaced;
    // then neighbours are merged as vma_modify_flags would.
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
            ulong pieceStart = Math.Max(start, vma.Start), pieceEnd = Math.Min(end, vma.End);
            BeginWrite(vma);
            Detach(vma);
            if (vma.Start < pieceStart)
            {
                Attach(CopyOf(vma, vma.Start, pieceStart, vma.Flags));
            }
            Vma piece = CopyOf(vma, pieceStart, pieceEnd, newFlags);
            Attach(piece);
            if (vma.End > pieceEnd)
            {
                Attach(CopyOf(vma, pieceEnd, vma.End, vma.Flags));
            }
            PageProtection protection = Vma.ProtectionOf(newFlags);
            bool mayWrite = (newFlags & (VmFlags.Write | VmFlags.Shared)) == VmFlags.Write;
            _mm.PageTable.ChangeProtection(pieceStart, pieceEnd, protection,
                pfn => mayWrite && _mm.Memory.IsExclusiveAnonymous(pfn),
                gather);
        }
        if (!changed)
        {
            return;
        }
        MergeWindow(start, end);
        _mm.Tree.Publish();
        // No stale write (or any narrowed) permission survives the return: every Cpu flushes, and accesses that
        // began under the old translation finish before we return.
        gather.Finish(_mm.Probes);
        EndWriteSections();
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

    private Errno ValidateMap(ref ulong address, ref ulong length, MapFlags flags)
    {
        int type = (int)flags & 0x0f;
        if ((flags & MapFlags.Anonymous) == 0)
        {
            // A file mapping needs a file: fd -1 is EBADF, checked before the type (as fget comes first).
            return type is 1 or 2 or 3 ? Errno.EBADF : Errno.EINVAL;
        }
        // Anonymous mappings accept only MAP_SHARED or MAP_PRIVATE; MAP_SHARED_VALIDATE is for files (verified on
        // the host: EINVAL even without unknown flags). Unknown flag bits are ignored, as Linux does.
        if (type is not (1 or 2))
        {
            return Errno.EINVAL;
        }
        if ((flags & MapFlags.Shared) != 0)
        {
            // Shared anonymous memory (shmem) is not built yet.
            return Errno.EINVAL;
        }
        return ValidateRange(ref address, ref length, flags);
    }

    // The checks every mmap makes of its range: length, and a fixed address's alignment and bounds.
    private Errno ValidateRange(ref ulong address, ref ulong length, MapFlags flags)
    {
        if ((flags & MapFlags.HugeTlb) != 0)
        {
            return Errno.ENOMEM;
        }
        if (length == 0)
        {
            return Errno.EINVAL;
        }
        length = AlignUp(length);
        if (length == 0 || length > PageGeometry.TaskSize)
        {
            return Errno.ENOMEM;
        }
        if ((flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0)
        {
            if ((address & PageGeometry.PageOffsetMask) != 0)
            {
                return Errno.EINVAL;
            }
            if (address > PageGeometry.TaskSize - length)
            {
                return Errno.ENOMEM;
            }
            if (address < _mm.Settings.MmapMinAddress)
            {
                return Errno.EPERM;
            }
        }
        return Errno.None;
    }

    // get_unmapped_area: fixed, a free hint, top-down below mmap_base, then bottom-up above it.
    private Errno Place(ulong address, ulong length, MapFlags flags, out ulong start)
    {
        start = address;
        if ((flags & MapFlags.FixedNoReplace) != 0)
        {
            return _mm.Tree.FindFirstEndingAbove(address) is { } vma && vma.Start < address + length ? Errno.EEXIST : Errno.None;
        }
        if ((flags & MapFlags.Fixed) != 0)
        {
            return Errno.None;
        }
        ulong hint = address & ~PageGeometry.PageOffsetMask;
        if (hint != 0 && hint < _mm.Settings.MmapMinAddress)
        {
            hint = AlignUp(_mm.Settings.MmapMinAddress);
        }
        if (hint != 0 && hint <= PageGeometry.TaskSize - length
            && !(_mm.Tree.FindFirstEndingAbove(hint) is { } taken && taken.Start < hint + length))
        {
            start = hint;
            return Errno.None;
        }
        ulong low = AlignUp(_mm.Settings.MmapMinAddress);
        ulong? found = _mm.Tree.FindGapTopDown(length, low, Math.Min(_mm.Settings.MmapBase, PageGeometry.TaskSize))
            ?? _mm.Tree.FindGapBottomUp(length, low, PageGeometry.TaskSize);
        if (found is null)
        {
            return Errno.ENOMEM;
        }
        start = found.Value;
        return Errno.None;
    }

    private static VmFlags VmFlagsFor(Protection protection, MapFlags flags)
    {
        VmFlags vm = VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec;
        if ((protection & Protection.Read) != 0)
        {
            vm |= VmFlags.Read;
        }
        if ((protection & Protection.Write) != 0)
        {
            vm |= VmFlags.Write;
        }
        if ((protection & Protection.Execute) != 0)
        {
            vm |= VmFlags.Exec;
        }
        if ((flags & MapFlags.GrowsDown) != 0)
        {
            vm |= VmFlags.GrowsDown;
        }
        if ((flags & MapFlags.Locked) != 0)
        {
            vm |= VmFlags.Locked;
        }
        if ((flags & MapFlags.NoReserve) != 0)
        {
            vm |= VmFlags.NoReserve;
        }
        if (((int)flags & 0x0f) is 1 or 3)
        {
            // Only a backed mapping gets here shared: anonymous MAP_SHARED is refused by ValidateMap.
            vm |= VmFlags.Shared | VmFlags.MayShare;
        }
        // accountable_mapping: private writable memory is committed unless MAP_NORESERVE.
        if ((vm & (VmFlags.NoReserve | VmFlags.Shared | VmFlags.Write)) == VmFlags.Write)
        {
            vm |= VmFlags.Account;
        }
        return vm;
    }

    // vm_ops->may_split for every VMA an edit of [start, end) splits (one straddling either edge), asked before
    // anything changes so that a refusal leaves the address space as it was.
    private bool EdgesMaySplit(ulong start, ulong end)
    {
        foreach (Vma vma in _mm.Tree.Intersecting(start, end))
        {
            if ((vma.Start < start && !MaySplitAt(vma, start)) || (vma.End > end && !MaySplitAt(vma, end)))
            {
                return false;
            }
        }
        return true;
    }

    private static bool MaySplitAt(Vma vma, ulong address) =>
        vma.Backing.MaySplit(vma.PageOffset, vma.Length >> PageGeometry.PageShift, vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift));

    // The VMA count after removing [start, end): VMAs inside go, a VMA straddling an edge keeps its outside part.
    private int CountAfterUnmap(ulong start, ulong end)
    {
        List<Vma> affected = _mm.Tree.Intersecting(start, end);
        int count = _mm.Tree.Count - affected.Count;
        foreach (Vma vma in affected)
        {
            count += (vma.Start < start ? 1 : 0) + (vma.End > end ? 1 : 0);
        }
        return count;
    }

    // Detaches the VMAs over [start, end), re-attaches the parts outside it, publishes, then tears down PTEs and
    // tables. With `downgrade` the write lock becomes a read lock first (as munmap does), releasing VMA write locks.
    private void RemoveRange(ulong start, ulong end, bool downgrade)
    {
        List<Vma> affected = _mm.Tree.Intersecting(start, end);
        foreach (Vma vma in affected)
        {
            BeginWrite(vma);
            Detach(vma);
            if (vma.Start < start)
            {
                Attach(CopyOf(vma, vma.Start, start, vma.Flags));
            }
            if (vma.End > end)
            {
                Attach(CopyOf(vma, end, vma.End, vma.Flags));
            }
        }
        _mm.Tree.Publish();
        ulong floor = _mm.Tree.FindLastStartingBelow(start)?.End ?? 0;
        ulong ceiling = _mm.Tree.FindFirstEndingAbove(end)?.Start ?? PageGeometry.TranslatedAddressEnd;
        EndWriteSections();
        if (downgrade)
        {
            _mm.MmapLock.DowngradeWrite();
            _mm.Probes.Hit(ProbePoint.UnmapDowngraded);
        }
        var gather = new MmuGather(_mm.Memory, _mm.Rcu, _mm.GatherBatchLimit);
        long unmapped = _mm.PageTable.Zap(start, end, gather, _mm.Probes);
        unmapped += _mm.PageTable.FreeTables(start, end, floor, ceiling, gather);
        _mm.SharedCounters.AddShared(VmEvent.AnonPages, -unmapped);
        gather.Finish(_mm.Probes);
    }

    // vma_merge_new_range and the merges of vma_modify: walks the VMAs from the one ending at `start` to the one
    // starting at `end`, joining each compatible adjacent pair left to right (so a piece joins its left neighbour
    // first, and a three-way join happens only if the outer two are compatible, as are_anon_vmas_compatible asks).
    private void MergeWindow(ulong start, ulong end)
    {
        List<Vma> window = _mm.Tree.Intersecting(start == 0 ? 0 : start - 1, end + 1);
        if (window.Count == 0)
        {
            return;
        }
        Vma current = window[0];
        for (int i = 1; i < window.Count; i++)
        {
            current = VmaMergeRules.CanMerge(current, window[i]) ? Join(current, window[i]) : window[i];
        }
    }

    private Vma Join(Vma left, Vma right)
    {
        BeginWrite(left);
        BeginWrite(right);
        Detach(left);
        Detach(right);
        Vma joined = CopyOf(left, left.Start, right.End, left.Flags);
        joined.AnonVma = left.AnonVma ?? right.AnonVma;
        Attach(joined);
        return joined;
    }

    private void InsertAndMerge(Vma created)
    {
        BeginWrite(created);
        Attach(created);
        MergeWindow(created.Start, created.End);
    }

    private Vma CopyOf(Vma source, ulong start, ulong end, VmFlags flags)
    {
        Vma copy = _mm.CreateVma(start, end, source.PageOffset + ((start - source.Start) >> PageGeometry.PageShift), flags, source.Backing, source.Policy);
        copy.AnonVma = source.AnonVma;
        return copy;
    }

    // vma_start_write and write_seqcount_begin: readers of either protocol now see the VMA as changing.
    private void BeginWrite(Vma vma)
    {
        if (_writeLocked.Contains(vma))
        {
            return;
        }
        vma.StartWrite();
        vma.Sequence.BeginWrite();
        _writeLocked.Add(vma);
    }

    // Attach before insertion so a reader that finds the VMA can lock it (vma_mark_attached before vma_iter_store).
    // New VMAs are write-locked for the rest of this write section, like the kernel's vma_start_write(new).
    // Every VMA that enters the tree opens its backing (vm_ops->open) and every one that leaves closes it
    // (vm_ops->close), so a backing sees as many opens as closes over the life of its mappings.
    private void Attach(Vma vma)
    {
        vma.StartWrite();
        vma.MarkAttached();
        _mm.Tree.Insert(vma);
        vma.Backing.Opened(vma.PageOffset, vma.Length >> PageGeometry.PageShift);
    }

    private void Detach(Vma vma)
    {
        _mm.Tree.Remove(vma.Start);
        vma.MarkDetached();
        vma.Backing.Closed(vma.PageOffset, vma.Length >> PageGeometry.PageShift);
    }

    // write_seqcount_end for every VMA this operation changed; the VMA write locks end with the mmap write section.
    private void EndWriteSections()
    {
        foreach (Vma vma in _writeLocked)
        {
            vma.Sequence.EndWrite();
        }
        _writeLocked.Clear();
    }

    // mmap_write_lock, refusing an address space being torn down: its Dispose sets the mark before taking this lock,
    // so a writer that gets the lock after the teardown sees the mark (the lock's release and acquire order it).
    private void EnterWriteUnlessExiting()
    {
        _mm.MmapLock.EnterWrite();
        if (_mm.IsExiting)
        {
            _mm.MmapLock.ExitWrite();
            ObjectDisposedException.ThrowIf(true, typeof(AddressSpace));
        }
    }

    private static ulong AlignUp(ulong value) => PageGeometry.PageAlign(value);
}
