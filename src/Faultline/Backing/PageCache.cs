using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// A file's page cache (the kernel's <c>address_space</c> with its inode's size): the file's pages in guest RAM frames,
/// indexed by page offset, read in from the <see cref="IFileStore"/> on first use and written back on <see cref="Sync"/>.
/// File reads and writes go through it (<c>filemap_read</c>, <c>generic_perform_write</c>), so every user of the file
/// sees one copy of each page.
/// </summary>
/// <remarks>
/// <para>Page state lives in the frame's flags: <see cref="FrameFlags.Locked"/> (<c>PG_locked</c>: held while a page is
/// filled, written into, zeroed by a truncate or put under writeback; <see cref="TryLockPage"/> never waits, for the
/// speculative fault path), <see cref="FrameFlags.Uptodate"/> (the contents are valid: set once the fill succeeded),
/// <see cref="FrameFlags.Dirty"/> (newer than the store) and <see cref="FrameFlags.Writeback"/> (being written back,
/// clean meanwhile).</para>
/// <para>References: the cache holds one reference on each indexed frame; a lookup takes its own with
/// <c>folio_try_get</c> and re-reads the entry, so a page removed and freed meanwhile is never used. A truncate or the
/// release removes the pages from the index first (full fences), then drops the cache's references: a frame still
/// held by a reader lives until that reader puts it.</para>
/// <para>Thread-safety: <see cref="Read"/>, <see cref="TryGetCached"/> and <see cref="Length"/> take no file lock and
/// run concurrently with everything. <see cref="Write"/>, <see cref="Truncate"/>, <see cref="Sync"/> and
/// <see cref="Dispose"/> take the inode lock (<c>i_rwsem</c>), so they run one at a time; writeback therefore never
/// overlaps a write, and a write never waits on <see cref="FrameFlags.Writeback"/>. Lock order: the inode lock, then a
/// page lock, then <c>_pagesLock</c> (the index's leaf lock). <see cref="Dispose"/> must not overlap another call.</para>
/// </remarks>
internal sealed unsafe class PageCache : IDisposable
{
    private const int PageSize = PhysicalMemory.FrameSize;
    private const int PageShift = PhysicalMemory.FrameShift;

    /// <summary>Pages a fault that misses reads in (the kernel's default <c>ra_pages</c>: 128 KiB).</summary>
    public const int ReadAroundPages = 32;

    private readonly PhysicalMemory _memory;
    private readonly IFileStore? _store;
    private readonly PageIndex _index;
    private readonly object _inodeLock = new();
    private int _pagesLock;
    private long _size;
    private int _released;
    private int _closed;
    private BackgroundWriteback? _flusher;

    /// <summary>
    /// A cache over <paramref name="store"/> (null: the pages live only here, as tmpfs's) in <paramref name="memory"/>,
    /// whose user it becomes until <see cref="Dispose"/>; the store is disposed with the cache.
    /// </summary>
    public PageCache(PhysicalMemory memory, IFileStore? store)
    {
        memory.AddUser();
        _memory = memory;
        _store = store;
        _size = store?.Length ?? 0;
        _index = new PageIndex((ulong)((_size + PageSize - 1) >> PageShift));
        Mappings = new MappingSet(references: 1, Release);
    }

    /// <summary>
    /// The file's reverse map and reference count (<c>i_mmap</c>, <c>f_count</c>): the open file holds one reference
    /// (dropped by <see cref="Dispose"/>), every mapping one more; the last one releases the pages and the store.
    /// </summary>
    public MappingSet Mappings { get; }

    /// <summary>Pages up to the end of the file (<c>DIV_ROUND_UP(i_size, PAGE_SIZE)</c>): a fault at or past it is SIGBUS.</summary>
    public ulong SizePages => (ulong)((Length + PageSize - 1) >> PageShift);

    /// <summary><c>i_size</c>: the file's length in bytes. Acquire read; pairs with the release stores of the size.</summary>
    public long Length => Volatile.Read(ref _size);

    /// <summary>True when writes are allowed (a store opened for writing, or no store).</summary>
    public bool CanWrite => _store?.CanWrite ?? true;

    /// <summary>False for a cache without a store (tmpfs, memfd: <c>mapping_can_writeback</c> is false for shmem).</summary>
    public bool CanWriteBack => _store is not null;

    /// <summary>True once <see cref="Dispose"/> closed the file. Acquire read; pairs with the close's exchange.</summary>
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>The guest RAM the pages live in.</summary>
    public PhysicalMemory Memory => _memory;

    /// <summary>Pages cached now (<c>nrpages</c>). A snapshot.</summary>
    public long CachedPages => _index.Count;

    /// <summary>
    /// <c>pread</c>: up to <paramref name="buffer"/>'s length bytes from <paramref name="offset"/>, fewer at the end of
    /// the file (0 at or past it). EINVAL for a negative offset or one whose end overflows, EBADF after release,
    /// ENOMEM without a frame, EIO when the store fails; an error after some bytes were read returns those bytes.
    /// </summary>
    public Errno Read(long offset, Span<byte> buffer, out int read)
    {
        read = 0;
        if (offset < 0)
        {
            return Errno.EINVAL;
        }
        // Pairs with Dispose's store: a call made after Dispose returned sees it (Dispose must not overlap a call: GuestFile).
        if (Volatile.Read(ref _closed) != 0)
        {
            return Errno.EBADF;
        }
        if (offset > long.MaxValue - buffer.Length)
        {
            return Errno.EINVAL;
        }
        long size = Length;
        if (offset >= size || buffer.IsEmpty)
        {
            return Errno.None;
        }
        int count = (int)Math.Min(buffer.Length, size - offset);
        while (read < count)
        {
            long position = offset + read;
            int inPage = (int)(position & (PageSize - 1));
            int chunk = Math.Min(count - read, PageSize - inPage);
            if (_store is null && !IsCached((ulong)(position >> PageShift)))
            {
                // shmem_file_read_iter (SGP_READ): a hole reads as zeros and stays a hole.
                buffer.Slice(read, chunk).Clear();
                read += chunk;
                continue;
            }
            Errno error = GetPage((ulong)(position >> PageShift), out int frame);
            if (error != Errno.None)
            {
                return read > 0 ? Errno.None : error;
            }
            new ReadOnlySpan<byte>(_memory.FrameAddress(frame) + inPage, chunk).CopyTo(buffer.Slice(read, chunk));
            _memory.Put(frame);
            read += chunk;
        }
        return Errno.None;
    }

    /// <summary>
    /// <c>pwrite</c>: all of <paramref name="data"/> at <paramref name="offset"/> into the cache (the pages become
    /// dirty), extending the file past its end. EINVAL for a negative offset or one whose end overflows, EBADF when the
    /// file is read-only or released, ENOMEM or EIO as <see cref="Read"/>; an error after some bytes returns those.
    /// </summary>
    public Errno Write(long offset, ReadOnlySpan<byte> data, out int written)
    {
        written = 0;
        if (offset < 0)
        {
            return Errno.EINVAL;
        }
        lock (_inodeLock)
        {
            // ksys_pwrite64's order: a negative offset, the descriptor, FMODE_WRITE, then rw_verify_area's overflow.
            if (Volatile.Read(ref _closed) != 0 || !CanWrite)
            {
                return Errno.EBADF;
            }
            if (offset > long.MaxValue - data.Length)
            {
                return Errno.EINVAL;
            }
            if (offset + data.Length > _size)
            {
                ZeroPastEnd();
            }
            while (written < data.Length)
            {
                long position = offset + written;
                int inPage = (int)(position & (PageSize - 1));
                int chunk = Math.Min(data.Length - written, PageSize - inPage);
                Errno error = GetPage((ulong)(position >> PageShift), out int frame);
                if (error != Errno.None)
                {
                    return written > 0 ? Errno.None : error;
                }
                LockPage(frame);
                data.Slice(written, chunk).CopyTo(new Span<byte>(_memory.FrameAddress(frame) + inPage, chunk));
                _memory.SetFlags(frame, FrameFlags.Dirty);
                UnlockPage(frame);
                _memory.Put(frame);
                written += chunk;
                if (position + chunk > _size)
                {
                    // Release store: the page's new bytes are visible before a reader sees the size that covers them.
                    Volatile.Write(ref _size, position + chunk);
                }
            }
            return Errno.None;
        }
    }

    /// <summary>
    /// <c>ftruncate</c>: the file becomes <paramref name="length"/> bytes. Shrinking drops the cached pages past the
    /// new end and zeroes the tail of the page it falls in (<c>truncate_inode_pages_range</c>), so a later extension
    /// reads zeros; the store is resized first. EINVAL for a negative length or a read-only file (as
    /// <c>ftruncate</c> on a descriptor without <c>FMODE_WRITE</c>), EBADF after release, EFBIG past the host file
    /// system's largest file, EIO when the store fails otherwise (nothing changed then).
    /// </summary>
    public Errno Truncate(long length)
    {
        if (length < 0)
        {
            return Errno.EINVAL;
        }
        lock (_inodeLock)
        {
            if (Volatile.Read(ref _closed) != 0)
            {
                return Errno.EBADF;
            }
            if (!CanWrite)
            {
                return Errno.EINVAL;
            }
            try
            {
                _store?.SetLength(length);
            }
            catch (IOException failure)
            {
                return HostErrno(failure);
            }
            long old = _size;
            if (length > old)
            {
                ZeroPastEnd();
            }
            // Release store; readers clamp to the new size before the pages go.
            Volatile.Write(ref _size, length);
            if (length < old)
            {
                var removed = new List<int>();
                ulong holeBegin = ((ulong)length + PageSize - 1) >> PageShift;
                SpinWord.Enter(ref _pagesLock);
                _index.RemoveRange(holeBegin, ulong.MaxValue, removed);
                SpinWord.Exit(ref _pagesLock);
                // truncate_pagecache: unmap_mapping_range(…, even_cows=1) after the removal (full fences): every mapping
                // of the cut pages goes, private copies too, so the next access is SIGBUS. A fault that looked a page up
                // before the removal re-checks it and the size under its PTE lock (IsStillMapped), which this zap takes.
                Mappings.Zap(holeBegin, ulong.MaxValue);
                int tail = (int)(length & (PageSize - 1));
                if (tail != 0 && TryGetCached((ulong)(length >> PageShift), out long partial))
                {
                    LockPage(partial);
                    new Span<byte>(_memory.FrameAddress(partial) + tail, PageSize - tail).Clear();
                    UnlockPage(partial);
                    _memory.Put(partial);
                }
                // The mappings' references went with their gathers; a reader that still holds one keeps its frame alive.
                _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
            }
            return Errno.None;
        }
    }

    /// <summary>
    /// <c>fsync</c>: every dirty page is written back to the store (dirty cleared and writeback set while it is
    /// written, <c>folio_start_writeback</c>), then the store is flushed. A page that fails stays dirty and the call
    /// returns EIO (EFBIG past the host file system's largest file); EBADF after release. Without a store there is nothing to write (tmpfs).
    /// </summary>
    public Errno Sync()
    {
        lock (_inodeLock)
        {
            return Volatile.Read(ref _closed) != 0 ? Errno.EBADF : WriteBack(0, ulong.MaxValue);
        }
    }

    /// <summary>
    /// <c>vfs_fsync_range</c> over pages [<paramref name="firstPageOffset"/>, <paramref name="endPageOffset"/>) (msync's
    /// MS_SYNC): as <see cref="Sync"/>, but only the dirty pages there are written. Before any page is looked at, every
    /// mapping of the range is cleaned (<c>folio_mkclean</c>: write-protected, its dirty bit passed to the page, TLBs
    /// flushed), so a store made through a mapping is written, and the next store faults and dirties the page again.
    /// The caller holds a reference (<see cref="MappingSet.Hold"/>): a mapping keeps a closed file's cache.
    /// </summary>
    public Errno SyncRange(ulong firstPageOffset, ulong endPageOffset)
    {
        lock (_inodeLock)
        {
            return WriteBack(firstPageOffset, endPageOffset);
        }
    }

    // Under the inode lock: the mappings of the range are cleaned, then each of its dirty pages is written back and the
    // store flushed. Without a store there is nothing to write (tmpfs).
    private Errno WriteBack(ulong firstPageOffset, ulong endPageOffset)
    {
        {
            if (_store is null)
            {
                return Errno.None;
            }
            Mappings.Clean(firstPageOffset, endPageOffset, this);
            Errno result = Errno.None;
            var pages = new List<(ulong PageOffset, int Frame)>();
            _index.CollectRange(firstPageOffset, endPageOffset, pages);
            foreach ((ulong pageOffset, int entry) in pages)
            {
                if (!TryGetCached(pageOffset, out long frame))
                {
                    continue;
                }
                Debug.Assert(frame == entry, "a page changed under the inode lock");
                LockPage(frame);
                if (!_memory.HasFlags(frame, FrameFlags.Dirty))
                {
                    UnlockPage(frame);
                    _memory.Put(frame);
                    continue;
                }
                _memory.ClearFlags(frame, FrameFlags.Dirty);
                _memory.SetFlags(frame, FrameFlags.Writeback);
                UnlockPage(frame);
                long start = (long)pageOffset << PageShift;
                // A page a racing read-in left past the end holds only zeros the file does not have: nothing to write.
                int bytes = (int)Math.Clamp(_size - start, 0, PageSize);
                try
                {
                    _store.Write(start, new ReadOnlySpan<byte>(_memory.FrameAddress(frame), bytes));
                }
                catch (IOException failure)
                {
                    _memory.SetFlags(frame, FrameFlags.Dirty);
                    result = HostErrno(failure);
                }
                _memory.ClearFlags(frame, FrameFlags.Writeback);
                _memory.Put(frame);
            }
            try
            {
                _store.Flush();
            }
            catch (IOException)
            {
                result = Errno.EIO;
            }
            return result;
        }
    }

    /// <summary>
    /// The cached page at <paramref name="pageOffset"/> with one reference for the caller, or false when none is
    /// cached (nothing is read in). Lock-free; the page may not be uptodate yet (its filler holds the page lock).
    /// </summary>
    public bool TryGetCached(ulong pageOffset, out long pfn)
    {
        while (true)
        {
            int frame = _index.Lookup(pageOffset);
            if (frame == 0)
            {
                pfn = PhysicalMemory.NoFrame;
                return false;
            }
            if (_memory.TryGet(frame))
            {
                // xas_reload: the frame may have been removed, freed and reused between the read and the reference.
                if (_index.Lookup(pageOffset) == frame)
                {
                    pfn = frame;
                    return true;
                }
                _memory.Put(frame);
            }
        }
    }

    /// <summary><c>folio_trylock</c>: takes the page lock of <paramref name="pfn"/> if free; never waits.</summary>
    /// <remarks>Full fence (acquire on success); pairs with <see cref="UnlockPage"/>'s.</remarks>
    public bool TryLockPage(long pfn) =>
        (Interlocked.Or(ref _memory.Info(pfn).Flags, (int)FrameFlags.Locked) & (int)FrameFlags.Locked) == 0;

    /// <summary><c>folio_lock</c>: takes the page lock of <paramref name="pfn"/>, waiting (yielding) while it is held.</summary>
    public void LockPage(long pfn)
    {
        var spinner = new SpinWait();
        while (!TryLockPage(pfn))
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
    }

    /// <summary><c>folio_unlock</c>: releases the page lock; the page's changes are visible to the next holder.</summary>
    /// <remarks>Full fence; pairs with <see cref="TryLockPage"/>'s.</remarks>
    public void UnlockPage(long pfn) => _memory.ClearFlags(pfn, FrameFlags.Locked);

    /// <summary>
    /// <c>close</c>: later file calls answer EBADF, and the open file's reference goes. Without mappings that releases the
    /// cache at once: every page is dropped (dirty ones too: the owner writes back first if it wants them kept), the
    /// store is disposed and the guest RAM is no longer used. Mappings keep the cache until the last one goes, which
    /// writes the pages they dirtied back first (the flusher's late writeback). Must not overlap another call.
    /// </summary>
    public void Dispose()
    {
        // Exchange (full fence): the only closer drops the reference; later calls see the mark (Read's acquire).
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            Mappings.Unhold();
        }
    }

    /// <summary>
    /// The cache's page at <paramref name="pageOffset"/> for a fault (<c>filemap_fault</c>), with a reference for the
    /// caller: SIGBUS at or past the end of the file (the page holding the end maps, its tail zero). With
    /// <paramref name="mayReadIn"/> a missing page is read in under its page lock and a page being filled is waited for;
    /// without it (the speculative and VMA-lock paths) nothing sleeps or does I/O: a page not cached or not uptodate
    /// answers RETRY, and so does a locked one when <paramref name="speculative"/> (<c>__lock_page_or_retry</c> with
    /// <c>FAULT_FLAG_SPECULATIVE</c>, the SPF v2 review, 2017-08). A read error is SIGBUS, as on Linux. A page read in
    /// brings its neighbours as <paramref name="around"/> says (<c>do_sync_mmap_readahead</c>), so the next faults near
    /// it, and fault-around, find them cached.
    /// </summary>
    public BackingFaultStatus FaultPage(ulong pageOffset, bool speculative, bool mayReadIn, ReadAround around, out long pfn)
    {
        pfn = PhysicalMemory.NoFrame;
        if (pageOffset >= SizePages)
        {
            return BackingFaultStatus.SigBus;
        }
        if (mayReadIn && !speculative)
        {
            bool miss = _store is not null && !IsCached(pageOffset);
            Errno error = GetPage(pageOffset, out int frame);
            if (error != Errno.None)
            {
                // EBADF: released, which a linked VMA prevents; the fault's re-validation decides.
                return error switch { Errno.ENOMEM => BackingFaultStatus.Oom, Errno.EIO => BackingFaultStatus.SigBus, _ => BackingFaultStatus.Retry };
            }
            if (miss && around != ReadAround.None)
            {
                ReadIn(pageOffset, around);
            }
            pfn = frame;
            return BackingFaultStatus.Ok;
        }
        if (!TryGetCached(pageOffset, out long found))
        {
            return BackingFaultStatus.Retry;
        }
        FrameFlags refuse = speculative ? FrameFlags.Locked : 0;
        if (!_memory.HasFlags(found, FrameFlags.Uptodate) || (refuse != 0 && _memory.HasFlags(found, refuse)))
        {
            _memory.Put(found);
            return BackingFaultStatus.Retry;
        }
        pfn = found;
        return BackingFaultStatus.Ok;
    }

    /// <summary>
    /// <c>filemap_map_pages</c>' lookup: the page at <paramref name="pageOffset"/> with a reference when it is cached,
    /// uptodate, unlocked and inside the file; false otherwise (nothing is read in or waited for). Lock-free.
    /// </summary>
    public bool TryGetMappable(ulong pageOffset, out long pfn)
    {
        if (pageOffset >= SizePages || !TryGetCached(pageOffset, out pfn))
        {
            pfn = PhysicalMemory.NoFrame;
            return false;
        }
        if (!_memory.HasFlags(pfn, FrameFlags.Uptodate) || _memory.HasFlags(pfn, FrameFlags.Locked))
        {
            _memory.Put(pfn);
            pfn = PhysicalMemory.NoFrame;
            return false;
        }
        return true;
    }

    /// <summary>
    /// True while <paramref name="pfn"/> is the page at <paramref name="pageOffset"/> and that page is inside the file.
    /// Asked under the PTE lock before a fault installs the page: a truncate lowers the size and removes the page before
    /// its zap takes that lock, so the fault either installs first (and is zapped) or sees the change.
    /// </summary>
    public bool IsStillMapped(ulong pageOffset, long pfn) => pageOffset < SizePages && _index.Lookup(pageOffset) == pfn;

    /// <summary><c>mincore_page</c>: true when a page is cached at <paramref name="pageOffset"/>. Lock-free, a snapshot.</summary>
    public bool IsCached(ulong pageOffset) => _index.Lookup(pageOffset) != 0;

    /// <summary>
    /// <c>fallocate(PUNCH_HOLE | KEEP_SIZE)</c> over pages [<paramref name="firstPageOffset"/>,
    /// <paramref name="endPageOffset"/>) inside the file: the pages leave the cache and every mapping (private copies
    /// too), and the store's bytes there become zeros, so the next touch reads zeros.
    /// </summary>
    public void PunchHole(ulong firstPageOffset, ulong endPageOffset)
    {
        lock (_inodeLock)
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
            Mappings.Zap(firstPageOffset, endPageOffset);
            if (_store is not null)
            {
                long start = (long)firstPageOffset << PageShift;
                long end = Math.Min(_size, (long)endPageOffset << PageShift);
                try
                {
                    var zeros = new byte[Math.Min(end - start, 16 * PageSize)];
                    for (long at = start; at < end; at += zeros.Length)
                    {
                        _store.Write(at, zeros.AsSpan(0, (int)Math.Min(zeros.Length, end - at)));
                    }
                }
                catch (IOException)
                {
                    // fallocate's error has nowhere to go from madvise(MADV_REMOVE) here; the cache is punched anyway.
                }
            }
            _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
        }
    }

    /// <summary>
    /// Starts a background flusher (<see cref="BackgroundWriteback"/>): every <paramref name="period"/>, once dirty
    /// pages are at least <paramref name="dirtyRatio"/> of the cached ones, they are written back. Replaces an earlier
    /// flusher; nothing to do without a store. It stops when the cache is released.
    /// </summary>
    public void StartBackgroundWriteback(double dirtyRatio, TimeSpan period)
    {
        if (_store is null)
        {
            return;
        }
        BackgroundWriteback? previous;
        lock (_inodeLock)
        {
            if (Volatile.Read(ref _released) != 0)
            {
                return;
            }
            previous = _flusher;
            // Release store; pairs with the acquire reads of the release and of the count.
            Volatile.Write(ref _flusher, new BackgroundWriteback(this, dirtyRatio, period));
        }
        previous?.Dispose();
    }

    /// <summary>Write-backs the background flusher has started (0 without one).</summary>
    public int BackgroundWritebacks => Volatile.Read(ref _flusher)?.Runs ?? 0;

    /// <summary>
    /// The flusher's check: under the inode lock, when the cache's dirty pages are at least <paramref name="ratio"/> of
    /// its cached pages (and there is one), writes the dirty pages back as <see cref="Sync"/> does (mappings cleaned
    /// first); true when it did. Nothing after release.
    /// </summary>
    public bool WriteBackIfDirtyAbove(double ratio)
    {
        lock (_inodeLock)
        {
            if (Volatile.Read(ref _released) != 0 || _store is null)
            {
                return false;
            }
            var pages = new List<(ulong PageOffset, int Frame)>();
            _index.CollectRange(0, ulong.MaxValue, pages);
            int dirty = 0;
            foreach ((_, int frame) in pages)
            {
                dirty += _memory.HasFlags(frame, FrameFlags.Dirty) ? 1 : 0;
            }
            if (dirty == 0 || dirty < ratio * pages.Count)
            {
                return false;
            }
            _ = WriteBack(0, ulong.MaxValue);
            return true;
        }
    }

    // The last reference went (the file is closed and no mapping is left): the pages mappings dirtied since the last
    // sync are written back, then every page is dropped, the store disposed and the guest RAM no longer used.
    private void Release()
    {
        Volatile.Read(ref _flusher)?.Dispose();
        lock (_inodeLock)
        {
            _ = WriteBack(0, ulong.MaxValue);
            var removed = new List<int>();
            SpinWord.Enter(ref _pagesLock);
            Volatile.Write(ref _released, 1);
            _index.RemoveRange(0, ulong.MaxValue, removed);
            SpinWord.Exit(ref _pagesLock);
            _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
            _store?.Dispose();
            _memory.Dispose();
        }
    }

    // filemap_get_pages: the uptodate page at pageOffset with a reference for the caller, read in when not cached (a
    // new frame, locked while it is filled and published at once so concurrent readers wait on it instead of reading).
    private Errno GetPage(ulong pageOffset, out int pfn)
    {
        while (true)
        {
            if (TryGetCached(pageOffset, out long found))
            {
                if (!_memory.HasFlags(found, FrameFlags.Uptodate))
                {
                    // Its filler holds the lock: wait for it, then see whether the fill succeeded.
                    LockPage(found);
                    bool valid = _memory.HasFlags(found, FrameFlags.Uptodate) && _index.Lookup(pageOffset) == found;
                    UnlockPage(found);
                    if (!valid)
                    {
                        _memory.Put(found);
                        continue;
                    }
                }
                pfn = (int)found;
                return Errno.None;
            }
            int frame = _memory.Allocate();
            if (frame == PhysicalMemory.NoFrame)
            {
                pfn = PhysicalMemory.NoFrame;
                return Errno.ENOMEM;
            }
            _memory.PrepareZeroed(frame);
            ref FrameInfo info = ref _memory.Info(frame);
            info.Kind = _store is null ? FrameKind.Shmem : FrameKind.PageCache;
            info.Mapping = this;
            info.Index = pageOffset;
            _memory.SetFlags(frame, FrameFlags.Locked);
            SpinWord.Enter(ref _pagesLock);
            bool released = _released != 0;
            bool inserted = !released && _index.TryInsert(pageOffset, frame);
            if (inserted)
            {
                // The caller's reference, taken before a truncate can remove the page and drop the cache's.
                _memory.Get(frame);
            }
            SpinWord.Exit(ref _pagesLock);
            if (!inserted)
            {
                // Never published: still zero, back to the allocator.
                _memory.MarkUnused(frame);
                _memory.Put(frame);
                if (released)
                {
                    pfn = PhysicalMemory.NoFrame;
                    return Errno.EBADF;
                }
                continue;
            }
            Errno error = Fill(pageOffset, frame);
            if (error != Errno.None)
            {
                RemoveFailed(pageOffset, frame);
                UnlockPage(frame);
                _memory.Put(frame);
                pfn = PhysicalMemory.NoFrame;
                return error;
            }
            _memory.SetFlags(frame, FrameFlags.Uptodate);
            UnlockPage(frame);
            pfn = frame;
            return Errno.None;
        }
    }

    // Under the inode lock, before the size grows: the bytes of the end page past the end (stores through a mapping land
    // there and are never written back) become zeros, as a disk file system's extension zeroes them (ext4 and xfs zero
    // the old end's block; tmpfs keeps them, and so does a cache without a store).
    private void ZeroPastEnd()
    {
        int tail = (int)(_size & (PageSize - 1));
        if (_store is null || tail == 0 || !TryGetCached((ulong)(_size >> PageShift), out long page))
        {
            return;
        }
        LockPage(page);
        new Span<byte>(_memory.FrameAddress(page) + tail, PageSize - tail).Clear();
        UnlockPage(page);
        _memory.Put(page);
    }

    // do_sync_mmap_readahead after a miss at pageOffset: the window's other pages not cached are read in (each under its
    // page lock, as a read-in is); a failure ends it quietly, as a read-ahead's does (the fault's own page is in).
    private void ReadIn(ulong pageOffset, ReadAround around)
    {
        ulong first = around == ReadAround.Sequential ? pageOffset + 1 : pageOffset - Math.Min(pageOffset, ReadAroundPages / 2);
        // Around: [index - 16, index + 16); sequential: [index, index + 32), the faulting page included in both.
        ulong end = Math.Min(SizePages, first + (ulong)ReadAroundPages - (around == ReadAround.Sequential ? 1UL : 0UL));
        for (ulong page = first; page < end; page++)
        {
            if (page == pageOffset || IsCached(page))
            {
                continue;
            }
            if (GetPage(page, out int frame) != Errno.None)
            {
                return;
            }
            _memory.Put(frame);
        }
    }

    // The host's errno where .NET kept it (an IOException's HResult is the raw errno for the errors it has no type
    // for): EFBIG past the host file system's largest file; EIO for everything else.
    private static Errno HostErrno(IOException failure) => failure.HResult == (int)Errno.EFBIG ? Errno.EFBIG : Errno.EIO;

    // read_folio: the page's bytes from the store; what the store lacks (past its end, or no store) stays zero.
    private Errno Fill(ulong pageOffset, int frame)
    {
        if (_store is null)
        {
            return Errno.None;
        }
        var page = new Span<byte>(_memory.FrameAddress(frame), PageSize);
        long start = (long)pageOffset << PageShift;
        try
        {
            int filled = 0;
            while (filled < PageSize)
            {
                int got = _store.Read(start + filled, page[filled..]);
                if (got == 0)
                {
                    break;
                }
                filled += got;
            }
            return Errno.None;
        }
        catch (IOException)
        {
            return Errno.EIO;
        }
    }

    // A page whose fill failed leaves the index (if a truncate has not removed it already) with the cache's reference.
    private void RemoveFailed(ulong pageOffset, int frame)
    {
        var removed = new List<int>();
        SpinWord.Enter(ref _pagesLock);
        if (_index.Lookup(pageOffset) == frame)
        {
            _index.RemoveRange(pageOffset, pageOffset + 1, removed);
        }
        SpinWord.Exit(ref _pagesLock);
        _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(removed));
    }
}
