using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// Shared anonymous memory (<c>MAP_SHARED|MAP_ANONYMOUS</c>): the unlinked shmem file <c>shmem_zero_setup</c> gives the
/// VMA (<c>/dev/zero (deleted)</c> in the maps, with its own inode). Its pages are page-cache frames of this object,
/// zero-filled on first touch (<c>shmem_fault</c>), found again by every mapping of it — the VMA's pieces after a split
/// and a forked child's copy — so writes through one are seen by all, and never copied on write.
/// </summary>
/// <remarks>
/// <para>The page index (the kernel's xarray, <see cref="PageIndex"/>) maps offsets to frame numbers. Readers walk it
/// without a lock; writers change it under <c>_pagesLock</c> (the
/// xarray's lock, a leaf lock), publishing new nodes and entries with release stores. A lookup that found a frame takes
/// a reference only if the count is not zero and then re-reads the entry (<c>folio_try_get</c> + <c>xas_reload</c>), so
/// a frame removed and freed meanwhile is never returned.</para>
/// <para>Ownership: the object holds one reference on each cached frame; each mapping PTE holds its own. The object is
/// referenced by the VMAs linked to it (<see cref="Link"/>, across splits and fork); the last <see cref="Unlink"/> drops
/// the object's references, and frames still mapped are freed when their last mapping goes (after its TLB flush). A
/// writer editing a VMA of it holds it (<see cref="Hold"/>) until its edit ends, since an edit detaches the old VMA
/// before it attaches the pieces.</para>
/// <para>Lock order: the mapping lock (<see cref="MappingSet"/>, <c>i_mmap_rwsem</c>) comes after the VMA lock and before an anon_vma family's
/// lock and the PTE locks; a hole punch holds it across the zaps and their grace periods. <c>_pagesLock</c> is a leaf
/// (nothing is taken or waited for inside it). Every member is thread-safe.</para>
/// </remarks>
internal sealed class SharedMemoryObject : IPageCacheBacking
{
    /// <summary>The device shmem's internal mount has on Linux (the first anonymous device, <c>00:01</c>).</summary>
    public const int ShmemDeviceMinor = 1;

    private static long s_nextInode;

    private readonly PhysicalMemory _memory;
    private readonly PageIndex _index;
    private readonly MappingSet _mappings;
    private int _pagesLock;
    private int _released;

    /// <summary>An object of <paramref name="pages"/> pages (the mapping's length: <c>i_size</c>), all holes.</summary>
    public SharedMemoryObject(PhysicalMemory memory, ulong pages)
    {
        _memory = memory;
        SizePages = pages;
        _index = new PageIndex(pages);
        Inode = NextInode();
        _mappings = new MappingSet(references: 0, Release);
    }

    /// <summary>A new inode number on shmem's internal mount (<c>get_next_ino</c>), for this object or a memfd.</summary>
    public static ulong NextInode() => (ulong)Interlocked.Increment(ref s_nextInode);

    /// <summary>Pages in the object (<c>i_size</c> in pages); a fault at or past it is SIGBUS.</summary>
    public ulong SizePages { get; }

    /// <summary>Pages cached now (the object's share of <c>nr_shmem</c>). A snapshot.</summary>
    public long CachedPages => _index.Count;

    /// <summary>VMAs linked now (the file's reference count from mappings). A snapshot taken under the mapping lock.</summary>
    public int MappingCount => _mappings.Count;

    /// <inheritdoc />
    public int DeviceMinor => ShmemDeviceMinor;

    /// <inheritdoc />
    public ulong Inode { get; }

    /// <inheritdoc />
    public bool IsAnonymous => false;

    /// <inheritdoc />
    /// <remarks>
    /// True: a speculative fault may handle shmem (the SPF v2 review, 2017-08, asked for a whitelist of safe
    /// <c>vm_ops</c> rather than refusing every file). <see cref="Fault"/> never sleeps: the lookup is lock-free, a hole
    /// is filled with a frame from the allocator (a leaf spin lock) inserted under <c>_pagesLock</c> (a leaf spin lock
    /// nobody holds while waiting), and an object whose last VMA went answers RETRY. The caller then installs under
    /// <c>pte_map_lock</c>, re-validating the VMA and re-checking the page (<see cref="IsStillCached"/>).
    /// </remarks>
    public bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public string MapsName => "/dev/zero (deleted)";

    /// <inheritdoc />
    /// <remarks><c>shmem_fault</c> → <c>shmem_get_folio_gfp(SGP_CACHE)</c>: the cached page, or a new zeroed one.</remarks>
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn)
    {
        pfn = PhysicalMemory.NoFrame;
        if (pageOffset >= SizePages)
        {
            return BackingFaultStatus.SigBus;
        }
        while (true)
        {
            if (TryGetCached(pageOffset, out pfn))
            {
                return BackingFaultStatus.Ok;
            }
            int frame = _memory.Allocate();
            if (frame == PhysicalMemory.NoFrame)
            {
                pfn = PhysicalMemory.NoFrame;
                return BackingFaultStatus.Oom;
            }
            _memory.PrepareZeroed(frame);
            ref FrameInfo info = ref _memory.Info(frame);
            info.Kind = FrameKind.Shmem;
            info.Mapping = this;
            info.Index = pageOffset;
            _memory.SetFlags(frame, FrameFlags.Uptodate);
            InsertResult inserted = Insert(pageOffset, frame);
            if (inserted == InsertResult.Inserted)
            {
                pfn = frame;
                return BackingFaultStatus.Ok;
            }
            // Never published: still zero, back to the allocator.
            _memory.MarkUnused(frame);
            _memory.Put(frame);
            if (inserted == InsertResult.Released)
            {
                // Only a fault on a VMA already unmapped sees this (a speculative one): the caller's re-validation fails.
                pfn = PhysicalMemory.NoFrame;
                return BackingFaultStatus.Retry;
            }
            // Another fault filled the hole first: take its page.
        }
    }

    /// <summary>
    /// <c>shmem_mfill_atomic_pte</c>'s page: a new page at <paramref name="pageOffset"/> filled with
    /// <paramref name="contents"/> (one page; empty for zeros), referenced for the caller as <see cref="Fault"/>'s is.
    /// EEXIST when a page is cached there already, EFAULT past the object's end, ENOMEM without a frame.
    /// </summary>
    public unsafe Errno InsertFilled(ulong pageOffset, ReadOnlySpan<byte> contents, out long pfn)
    {
        pfn = PhysicalMemory.NoFrame;
        if (pageOffset >= SizePages)
        {
            return Errno.EFAULT;
        }
        if (IsCached(pageOffset))
        {
            return Errno.EEXIST;
        }
        int frame = _memory.Allocate();
        if (frame == PhysicalMemory.NoFrame)
        {
            return Errno.ENOMEM;
        }
        _memory.PrepareZeroed(frame);
        contents.CopyTo(new Span<byte>(_memory.FrameAddress(frame), PhysicalMemory.FrameSize));
        ref FrameInfo info = ref _memory.Info(frame);
        info.Kind = FrameKind.Shmem;
        info.Mapping = this;
        info.Index = pageOffset;
        _memory.SetFlags(frame, FrameFlags.Uptodate | FrameFlags.Dirty);
        InsertResult inserted = Insert(pageOffset, frame);
        if (inserted == InsertResult.Inserted)
        {
            pfn = frame;
            return Errno.None;
        }
        _memory.Put(frame);
        // Released: the last mapping went away meanwhile (its VMA is gone, as an unmapped range's).
        return inserted == InsertResult.Occupied ? Errno.EEXIST : Errno.ENOENT;
    }

    /// <inheritdoc />
    public bool TryGetCached(ulong pageOffset, out long pfn)
    {
        while (true)
        {
            int frame = Lookup(pageOffset);
            if (frame == 0)
            {
                pfn = PhysicalMemory.NoFrame;
                return false;
            }
            if (_memory.TryGet(frame))
            {
                // xas_reload: the frame may have been removed, freed and reused between the read and the reference.
                if (Lookup(pageOffset) == frame)
                {
                    pfn = frame;
                    return true;
                }
                _memory.Put(frame);
            }
        }
    }

    /// <inheritdoc />
    public bool IsCached(ulong pageOffset) => pageOffset < SizePages && Lookup(pageOffset) != 0;

    /// <inheritdoc />
    public bool IsStillCached(ulong pageOffset, long pfn) => Lookup(pageOffset) == pfn;

    /// <inheritdoc />
    public void Opened(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public void Closed(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    /// <remarks>shmem splits anywhere.</remarks>
    public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset) => true;

    /// <inheritdoc />
    public void Link(object vma, IMappingZapper zapper, ulong pageOffset, ulong pages) => _mappings.Link(vma, zapper, pageOffset, pages);

    /// <inheritdoc />
    public void Hold() => _mappings.Hold();

    /// <inheritdoc />
    public void Unhold() => _mappings.Unhold();

    /// <inheritdoc />
    public void Unlink(object vma) => _mappings.Unlink(vma);

    /// <inheritdoc />
    /// <remarks>
    /// <c>shmem_fallocate(PUNCH_HOLE)</c>: the pages leave the index first (full fences), then every linked VMA's
    /// entries for them are zapped under the mapping lock, then the object's references go. A fault that looked a page
    /// up before its removal re-checks it under the PTE lock: before the zap takes that lock (then the zap clears what
    /// it installed) or after it (then it sees the removal and installs nothing).
    /// </remarks>
    public void PunchHole(ulong firstPageOffset, ulong endPageOffset)
    {
        endPageOffset = Math.Min(endPageOffset, SizePages);
        if (firstPageOffset >= endPageOffset)
        {
            return;
        }
        var removed = new List<int>();
        SpinWord.Enter(ref _pagesLock);
        _index.RemoveRange(firstPageOffset, endPageOffset, removed);
        SpinWord.Exit(ref _pagesLock);
        _mappings.Zap(firstPageOffset, endPageOffset);
        // The object's references back no translation: a frame still mapped elsewhere lives on through its mapping's.
        _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
    }

    // The last VMA went (iput of the unlinked file): no fault can reach the object through a linked VMA any more; one on
    // a stale VMA finds the release mark under the lock and retries.
    private void Release()
    {
        var removed = new List<int>();
        SpinWord.Enter(ref _pagesLock);
        Volatile.Write(ref _released, 1);
        _index.RemoveRange(0, SizePages, removed);
        SpinWord.Exit(ref _pagesLock);
        _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
    }

    private enum InsertResult
    {
        Inserted,
        Occupied,
        Released,
    }

    // Under _pagesLock: the frame (holding the object's reference) becomes the page at pageOffset, with a second
    // reference for the faulting caller, unless the slot is taken or the object released.
    private InsertResult Insert(ulong pageOffset, int frame)
    {
        SpinWord.Enter(ref _pagesLock);
        try
        {
            if (Volatile.Read(ref _released) != 0)
            {
                return InsertResult.Released;
            }
            if (_index.Lookup(pageOffset) != 0)
            {
                return InsertResult.Occupied;
            }
            // The caller's reference, taken before the page can be found (and removed by a punch).
            _memory.Get(frame);
            // Publishes with a release store (see PageIndex.TryInsert); the slot is free, checked under this lock.
            _index.TryInsert(pageOffset, frame);
            return InsertResult.Inserted;
        }
        finally
        {
            SpinWord.Exit(ref _pagesLock);
        }
    }

    // The lock-free walk (PageIndex.Lookup), bounded by the object's size.
    private int Lookup(ulong pageOffset) => pageOffset >= SizePages ? 0 : _index.Lookup(pageOffset);
}
