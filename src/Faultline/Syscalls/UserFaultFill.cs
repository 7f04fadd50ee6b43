using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// The resolutions of a user-fault channel (<c>mm/userfaultfd.c</c>): <c>UFFDIO_COPY</c>, <c>UFFDIO_ZEROPAGE</c>,
/// <c>UFFDIO_CONTINUE</c> (<c>mfill_atomic</c>, page by page under the VMA's read lock since 6.6, see
/// <see cref="UserFaultVmaLock"/>) and <c>UFFDIO_WRITEPROTECT</c> (<c>mwriteprotect_range</c>, which walks every VMA
/// of its range and so, as on Linux, still holds the mmap read lock). Each wakes the faults waiting in what it resolved
/// unless told not to.
/// </summary>
/// <remarks>Thread safety: any thread; the frame cache is shared under its own lock.</remarks>
internal sealed class UserFaultFill
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;
    private readonly FrameCache _frames;
    private readonly UserFaultVmaLock _vmaLock;

    /// <summary>
    /// Resolutions in <paramref name="mm"/>, holding VMAs through <paramref name="vmaLock"/>; <paramref name="owner"/>
    /// names it in exceptions.
    /// </summary>
    public UserFaultFill(MemoryDescriptor mm, object owner, UserFaultVmaLock vmaLock)
    {
        _mm = mm;
        _owner = owner;
        _frames = new FrameCache(mm.Memory);
        _vmaLock = vmaLock;
    }

    /// <summary>
    /// <c>userfaultfd_copy</c>/<c>_zeropage</c>/<c>_continue</c> → <c>mfill_atomic</c>: fills
    /// [<paramref name="start"/>, + <paramref name="length"/>) page by page. EAGAIN while a non-cooperative event is
    /// unread; EINVAL for a bad range or mode; ENOENT unless one registered VMA covers the range; EINVAL for a
    /// write-protected fill of a VMA not registered for it, a VMA neither anonymous nor shared memory, or a continue
    /// outside shared memory; per page EEXIST (already mapped or cached), EFAULT (continue with no cached page), ENOMEM.
    /// When some pages were done before an error, <paramref name="done"/> says how many bytes and the answer is EAGAIN.
    /// </summary>
    public Errno Fill(UserFaultContext context, UserFaultFillKind kind, ulong start, ulong length, ReadOnlySpan<byte> source,
        UserFaultResolveFlags flags, out ulong done)
    {
        done = 0;
        if (context.MappingsChanging)
        {
            return Errno.EAGAIN;
        }
        Errno invalid = UserFaultRegistration.ValidateRange(_mm, start, length);
        UserFaultResolveFlags allowed = kind == UserFaultFillKind.ZeroPage ? UserFaultResolveFlags.DontWake : UserFaultResolveFlags.DontWake | UserFaultResolveFlags.WriteProtect;
        if (invalid != Errno.None || (flags & ~allowed) != 0)
        {
            return Errno.EINVAL;
        }
        bool protect = (flags & UserFaultResolveFlags.WriteProtect) != 0;
        Errno error = _vmaLock.Lock(start, out UserFaultHeldVma held);
        if (error != Errno.None)
        {
            return error;
        }
        try
        {
            Vma vma = held.Vma;
            // uffd_mfill_lock's validate_dst_vma: the range inside one registered VMA.
            if (start + length > vma.End || vma.UserFault is null)
            {
                return Errno.ENOENT;
            }
            // mfill_atomic re-reads mmap_changing with the VMA held: an event prepared meanwhile refuses the fill.
            if (context.MappingsChanging)
            {
                return Errno.EAGAIN;
            }
            bool shmem = vma.Backing is SharedMemoryObject;
            if ((protect && (vma.Flags & VmFlags.UserfaultWp) == 0) || (!vma.Backing.IsAnonymous && !shmem) || (kind == UserFaultFillKind.Continue && !shmem))
            {
                return Errno.EINVAL;
            }
            for (ulong address = start; address < start + length; address += PageGeometry.PageSize)
            {
                ReadOnlySpan<byte> page = kind == UserFaultFillKind.Copy ? source.Slice((int)(address - start), PageGeometry.PageSize) : default;
                error = shmem ? FillShared(vma, kind, address, page, protect) : FillAnonymous(vma, kind, address, page, protect);
                if (error != Errno.None)
                {
                    break;
                }
                done += PageGeometry.PageSize;
            }
        }
        finally
        {
            _vmaLock.Unlock(held);
        }
        if (done == 0)
        {
            return error;
        }
        if ((flags & UserFaultResolveFlags.DontWake) == 0)
        {
            context.Wake(start, done);
        }
        return done == length ? Errno.None : Errno.EAGAIN;
    }

    /// <summary>
    /// <c>mwriteprotect_range</c>: sets or clears the uffd-wp bit on the mapped pages of
    /// [<paramref name="start"/>, + <paramref name="length"/>); clearing wakes the faults waiting there unless
    /// <see cref="UserFaultResolveFlags.DontWake"/>. EINVAL for a bad range or mode (protecting with DontWake),
    /// EAGAIN while an event is unread, ENOENT where a VMA is missing or not registered for write-protect.
    /// Protecting flushes every Cpu's writable translation before it returns.
    /// </summary>
    public Errno WriteProtect(UserFaultContext context, ulong start, ulong length, bool protect, UserFaultResolveFlags flags)
    {
        Errno invalid = UserFaultRegistration.ValidateRange(_mm, start, length);
        if (invalid != Errno.None || (flags & ~UserFaultResolveFlags.DontWake) != 0 || (protect && flags != 0))
        {
            return Errno.EINVAL;
        }
        if (context.MappingsChanging)
        {
            return Errno.EAGAIN;
        }
        ulong end = start + length;
        Errno error = Errno.ENOENT;
        _mm.EnterReadUnlessExiting(_owner);
        MmuGather gather = _mm.RentGather();
        try
        {
            ulong reached = start;
            while (reached < end && _mm.Tree.FindFirstEndingAbove(reached) is { } vma && vma.Start < end)
            {
                if ((vma.Flags & VmFlags.UserfaultWp) == 0)
                {
                    error = Errno.ENOENT;
                    break;
                }
                ulong from = Math.Max(start, vma.Start), to = Math.Min(end, vma.End);
                bool mayWrite = (vma.Flags & (VmFlags.Write | VmFlags.Shared)) == VmFlags.Write;
                var visitor = new UffdWpVisitor(_mm.PageTable, protect, mayWrite, gather);
                // Huge PMDs are write-protected 4 KiB at a time (no uffd-wp bit on a PMD here): split those in the range.
                for (ulong pmd = from & ~(PageGeometry.PmdSize - 1); pmd < to; pmd += PageGeometry.PmdSize)
                {
                    _mm.PageTable.SplitHugePmd(Math.Max(pmd, from));
                }
                _mm.PageTable.Walker.Walk(from, to, ref visitor);
                error = Errno.None;
                reached = to;
            }
            // Narrowed translations are gone from every Cpu before the call returns (uffd_wp_range's TLB flush).
            gather.Finish(_mm.Probes);
        }
        finally
        {
            _mm.ReturnGather(gather);
            _mm.MmapLock.ExitRead();
        }
        if (error == Errno.None && !protect && (flags & UserFaultResolveFlags.DontWake) == 0)
        {
            context.Wake(start, length);
        }
        return error;
    }

    // mfill_atomic_pte for an anonymous VMA: a new exclusive page (copied or zeroed), or the zero page for ZEROPAGE
    // where the address space maps it; installed only over an empty entry (EEXIST otherwise).
    private unsafe Errno FillAnonymous(Vma vma, UserFaultFillKind kind, ulong address, ReadOnlySpan<byte> source, bool protect)
    {
        PageTable table = _mm.PageTable;
        PteLocation at;
        int pfn;
        bool zeroPage = kind == UserFaultFillKind.ZeroPage && _mm.Settings.MapZeroPageOnRead;
        lock (_frames)
        {
            if (!table.WalkAllocate(address, _frames, out at))
            {
                return Errno.ENOMEM;
            }
            pfn = zeroPage ? PhysicalMemory.ZeroFrame : _frames.Allocate();
        }
        if (pfn == PhysicalMemory.NoFrame)
        {
            return Errno.ENOMEM;
        }
        if (!zeroPage && _mm.Group is { } group && !group.TryCharge(pfn, 1, FrameKind.Anonymous))
        {
            // mfill_atomic_pte_copy's mem_cgroup_charge failure: -ENOMEM, nothing installed.
            lock (_frames)
            {
                _frames.Release(pfn);
            }
            return Errno.ENOMEM;
        }
        if (!zeroPage)
        {
            _mm.Memory.PrepareZeroed(pfn);
            source.CopyTo(new Span<byte>(_mm.Memory.FrameAddress(pfn), PageGeometry.PageSize));
        }
        _mm.Probes.Hit(ProbePoint.UserFaultFillBeforePteLock);
        ref int ptl = ref table.PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        if (!Pte.IsNone(table.ReadPte(at)))
        {
            SpinWord.Exit(ref ptl);
            if (!zeroPage)
            {
                lock (_frames)
                {
                    _frames.Release(pfn);
                }
            }
            return Errno.EEXIST;
        }
        ulong entry;
        if (zeroPage)
        {
            entry = Pte.MakeLeaf(PhysicalMemory.ZeroFrame, vma.PageProtection, writable: false, special: true);
        }
        else
        {
            // folio_add_new_anon_rmap: exclusive, owned by the VMA's anon_vma at the page's index.
            ref FrameInfo info = ref _mm.Memory.Info(pfn);
            info.Kind = FrameKind.Anonymous;
            info.MapCount = 1;
            info.Mapping = vma.AnonVma;
            info.Index = vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift);
            _mm.Memory.SetFlags(pfn, FrameFlags.AnonExclusive);
            // mfill_atomic_install_pte: dirty, writable when the VMA is and the page is not write-protected.
            entry = Pte.MakeLeaf(pfn, vma.PageProtection, writable: !protect && (vma.Flags & VmFlags.Write) != 0, special: false) | Pte.Dirty;
        }
        entry |= Pte.Accessed | (protect ? Pte.UffdWp : 0);
        // Release store: the page's contents and metadata are visible before the PTE (set_pte_at).
        table.WritePte(at, entry);
        SpinWord.Exit(ref ptl);
        if (!zeroPage)
        {
            _mm.SharedCounters.AddShared(VmEvent.AnonPages);
        }
        return Errno.None;
    }

    // shmem_mfill_atomic_pte (copy, zeropage) or mfill_atomic_pte_continue: the page enters the object's cache (or is
    // found there), then is mapped dirty, writable as the shared VMA is, over an empty entry.
    private Errno FillShared(Vma vma, UserFaultFillKind kind, ulong address, ReadOnlySpan<byte> source, bool protect)
    {
        var shmem = (SharedMemoryObject)vma.Backing;
        ulong pageOffset = vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift);
        long pfn;
        if (kind == UserFaultFillKind.Continue)
        {
            if (!shmem.TryGetCached(pageOffset, out pfn))
            {
                return Errno.EFAULT;
            }
        }
        else
        {
            Errno inserted = shmem.InsertFilled(pageOffset, source, out pfn);
            if (inserted != Errno.None)
            {
                return inserted;
            }
        }
        PageTable table = _mm.PageTable;
        PteLocation at;
        lock (_frames)
        {
            if (!table.WalkAllocate(address, _frames, out at))
            {
                _mm.Memory.Put(pfn);
                return Errno.ENOMEM;
            }
        }
        if (_mm.Group is { } group && !group.TryChargeShared(pfn))
        {
            _mm.Memory.Put(pfn);
            return Errno.ENOMEM;
        }
        _mm.Probes.Hit(ProbePoint.UserFaultFillBeforePteLock);
        ref int ptl = ref table.PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        if (!Pte.IsNone(table.ReadPte(at)) || !shmem.IsStillCached(pageOffset, pfn))
        {
            // Mapped meanwhile, or punched out (finish_fault's re-check).
            SpinWord.Exit(ref ptl);
            _mm.Memory.Put(pfn);
            return Errno.EEXIST;
        }
        // The lookup's reference becomes the mapping's; full fence as in finish_fault.
        Interlocked.Increment(ref _mm.Memory.Info(pfn).MapCount);
        _mm.Memory.SetFlags(pfn, FrameFlags.Dirty);
        ulong entry = Pte.MakeLeaf(pfn, vma.PageProtection, writable: !protect && (vma.Flags & VmFlags.Write) != 0, special: false)
            | Pte.Accessed | Pte.Dirty | (protect ? Pte.UffdWp : 0);
        // Release store: the map count and flags are visible before the PTE (set_pte_at).
        table.WritePte(at, entry);
        SpinWord.Exit(ref ptl);
        _mm.SharedCounters.AddShared(VmEvent.ShmemPages);
        return Errno.None;
    }

    /// <summary>Returns the cached frames to the arena (the channel is closing).</summary>
    public void Drain()
    {
        lock (_frames)
        {
            _frames.DrainAll();
        }
    }
}
