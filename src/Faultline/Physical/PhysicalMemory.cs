namespace Faultline.Physical;

/// <summary>
/// The guest's RAM: a native arena of 4 KiB frames reserved lazily (untouched frames cost no host memory),
/// per-frame metadata, and the global free-frame allocator. Frame 0 is the shared zero frame. Frames are named
/// by their frame number (pfn); <see cref="FrameAddress"/> turns one into a host pointer.
/// </summary>
/// <remarks>
/// Several address spaces may share one arena (a forked child shares frames with its parent): each
/// <c>MemoryDescriptor</c> over it is a user (<see cref="AddUser"/>, <see cref="Dispose"/>), and the host mapping goes
/// back when the last one goes. Frame ownership follows <see cref="FrameInfo"/>'s reference rules.
/// </remarks>
internal sealed unsafe partial class PhysicalMemory : IDisposable
{
    /// <summary>Bytes in a frame.</summary>
    public const int FrameSize = PageGeometry.PageSize;
    /// <summary>log2 of <see cref="FrameSize"/>.</summary>
    public const int FrameShift = PageGeometry.PageShift;
    /// <summary>The pfn of the shared zero frame.</summary>
    public const int ZeroFrame = 0;
    /// <summary>Returned by allocation when no frame is left.</summary>
    public const int NoFrame = -1;

    private readonly ArenaHandle _arena;
    private readonly byte* _base;
    private readonly FrameInfo[] _frames;
    private readonly int[] _freeStack;    // free frames ready for use: zeroed, or poisoned in poisoning runs (a split huge block: as Zeroed says)
    private int _freeCount;
    private readonly int[]? _dirtyStack;  // free frames the background zeroer has not cleared yet (null: zeroing on free)
    private int _dirtyCount;
    private int _inZeroer;                // frames the zeroer holds between the stacks (guarded by _lock)
    private int _zeroerQueued;            // 1 while a zeroer run is queued or running
    private int _zeroerActive;            // zeroer runs inside their loop (the arena must outlive them)
    private int _releasing;               // set once the last user is going: no new zeroer run touches the arena
    private long _zeroedInBackground;
    private long _zeroedOnDemand;
    private int _nextUntouched; // frames at or above it were never handed out (bump allocation keeps them untouched)
    private int _lock;
    private int _framesInUse;
    private int _users = 1;

    /// <summary>
    /// Creates an arena of <paramref name="frameCount"/> frames. With <paramref name="backgroundZeroing"/> (ignored when
    /// poisoning), freed frames are cleared by a thread-pool worker instead of by the freeing writer, ahead of demand;
    /// a fault that finds none cleared clears its frame itself.
    /// </summary>
    public PhysicalMemory(int frameCount, bool poisonFreedFrames, bool backgroundZeroing = false)
    {
        if (frameCount < 16)
        {
            throw new ArgumentOutOfRangeException(nameof(frameCount), "at least 16 frames");
        }
        FrameCount = frameCount;
        PoisonFreedFrames = poisonFreedFrames;
        _arena = new ArenaHandle((nuint)frameCount * FrameSize);
        _base = _arena.Base;
        _frames = new FrameInfo[frameCount];
        _freeStack = new int[frameCount];
        _dirtyStack = backgroundZeroing && !poisonFreedFrames ? new int[frameCount] : null;
        _hugeStack = new int[frameCount / HugeFrames];
        _frames[ZeroFrame].Kind = FrameKind.Zero;
        _frames[ZeroFrame].RefCount = 1;
        HostPages.MakeReadOnly(_base, FrameSize);
        _nextUntouched = 1;
        for (int pfn = 1; pfn < frameCount; pfn++)
        {
            // Freshly reserved host memory reads as zero.
            _frames[pfn].Zeroed = true;
        }
    }

    /// <summary>Frames in the arena, the zero frame included.</summary>
    public int FrameCount { get; }

    /// <summary>Fill freed frames with <see cref="PoisonByte"/> so a use after free reads garbage a test can see.</summary>
    public bool PoisonFreedFrames { get; }

    /// <summary>The byte freed frames are filled with when poisoning.</summary>
    public const byte PoisonByte = 0x6B;

    /// <summary>Frames currently allocated (not free), the zero frame excluded.</summary>
    public int FramesInUse => Volatile.Read(ref _framesInUse);

    /// <summary>Frames that can still be allocated.</summary>
    public int FreeFrames => FrameCount - 1 - FramesInUse;

    /// <summary>Host address of a frame.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* FrameAddress(long pfn) => _base + (pfn << FrameShift);

    /// <summary>
    /// Host address of a page a page-table entry maps: an arena frame, or host memory of the <see cref="HostWindow"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte* PageAddress(long pfn) => HostWindow.Contains(pfn) ? HostWindow.Address(pfn) : FrameAddress(pfn);

    /// <summary>The metadata of a frame.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref FrameInfo Info(long pfn) => ref _frames[pfn];

    /// <summary>
    /// Allocates up to <paramref name="into"/>.Length frames (fewer when memory runs out), refcount 1, contents
    /// undefined. Returns how many were allocated.
    /// </summary>
    public int AllocateBatch(Span<int> into)
    {
        int n = 0;
        var spinner = new SpinWait();
        while (true)
        {
            Concurrency.SpinWord.Enter(ref _lock);
            while (n < into.Length && _freeCount > 0)
            {
                into[n++] = _freeStack[--_freeCount];
            }
            while (n < into.Length && _nextUntouched < FrameCount)
            {
                into[n++] = _nextUntouched++;
            }
            // Frames not cleared yet come last: the caller clears them (PrepareZeroed) when it needs zeroes.
            while (n < into.Length && _dirtyCount > 0)
            {
                into[n++] = _dirtyStack![--_dirtyCount];
            }
            // Last, a free huge block is broken up (the kernel's fallback to a higher order when order 0 is empty).
            while (n < into.Length && _hugeCount > 0)
            {
                SplitFreeHugeBlock();
                while (n < into.Length && _freeCount > 0)
                {
                    into[n++] = _freeStack[--_freeCount];
                }
            }
            bool zeroerHoldsFrames = n == 0 && _inZeroer > 0;
            Concurrency.SpinWord.Exit(ref _lock);
            if (!zeroerHoldsFrames)
            {
                break;
            }
            // The only free frames are being cleared right now: they are back within a few microseconds.
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        for (int i = 0; i < n; i++)
        {
            ref FrameInfo info = ref _frames[into[i]];
            Debug.Assert(info.Kind == FrameKind.Free && info.RefCount == 0);
            info.Kind = FrameKind.Allocated;
            info.RefCount = 1;
            info.MapCount = 0;
            info.Flags = 0;
        }
        Interlocked.Add(ref _framesInUse, n);
        if (_lru is not null)
        {
            CheckWatermark();
        }
        return n;
    }

    /// <summary>Allocates one frame, or <see cref="NoFrame"/>.</summary>
    public int Allocate()
    {
        Span<int> one = stackalloc int[1];
        return AllocateBatch(one) == 1 ? one[0] : NoFrame;
    }

    /// <summary>Returns frames to the free list. Callers guarantee no Cpu can reach them (a grace period passed).</summary>
    public void FreeBatch(ReadOnlySpan<int> frames)
    {
        foreach (int pfn in frames)
        {
            ref FrameInfo info = ref _frames[pfn];
            Debug.Assert(pfn != ZeroFrame && info.Kind != FrameKind.Free, "double free or zero frame");
            Debug.Assert(info.PinCount == 0, "a pinned frame freed");
            Debug.Assert((info.Flags & (int)(FrameFlags.HugeHead | FrameFlags.HugeTail)) == 0, "a huge block's frame freed alone (FreeHuge)");
            if ((Volatile.Read(ref info.Flags) & (int)FrameFlags.Lru) != 0)
            {
                // __folio_put: a frame still on an LRU list leaves it before it is free (its last user is gone, so no
                // reclaim holds it: isolation takes a reference and clears the flag).
                _lru!.Remove(pfn);
            }
            // mem_cgroup_uncharge: the last reference is gone, so nothing can charge or read the frame meanwhile.
            ChargeGroup.Uncharge(ref info);
            info.SwapEntry = 0;
            info.Kind = FrameKind.Free;
            info.RefCount = 0;
            info.MapCount = 0;
            info.PteLock = 0;
            info.Flags = 0;
            info.Mapping = null;
            info.Index = 0;
            // No clearing here: the fault that takes the frame clears it (PrepareZeroed), as the kernel's faults do.
            // Clearing on free put all of it on the unmapping thread, which serialized a workload whose threads fault
            // in parallel and whose one thread unmaps (pft: 16 faulting threads kept one core busy clearing).
            if (PoisonFreedFrames)
            {
                new Span<byte>(FrameAddress(pfn), FrameSize).Fill(PoisonByte);
                info.Zeroed = false;
            }
        }
        bool queueZeroer = false;
        Concurrency.SpinWord.Enter(ref _lock);
        foreach (int pfn in frames)
        {
            if (_dirtyStack is not null && !_frames[pfn].Zeroed)
            {
                _dirtyStack[_dirtyCount++] = pfn;
                queueZeroer = true;
            }
            else
            {
                _freeStack[_freeCount++] = pfn;
            }
        }
        Concurrency.SpinWord.Exit(ref _lock);
        Interlocked.Add(ref _framesInUse, -frames.Length);
        if (queueZeroer)
        {
            QueueZeroer();
        }
    }

    /// <summary>Frames the background zeroer cleared (statistics).</summary>
    public long FramesZeroedInBackground => Interlocked.Read(ref _zeroedInBackground);

    /// <summary>Frames a fault had to clear itself because none was cleared ahead of it (statistics).</summary>
    public long FramesZeroedOnDemand => Interlocked.Read(ref _zeroedOnDemand);

    /// <summary>True when freed frames are cleared in the background rather than by the freeing writer.</summary>
    public bool ZeroesInBackground => _dirtyStack is not null;

    // One run at a time, on the thread pool: nothing references the arena between runs, so an abandoned address
    // space's arena can still be collected.
    private void QueueZeroer()
    {
        // Full fence; pairs with the reset at the end of a run, which re-checks for frames freed meanwhile.
        if (Interlocked.CompareExchange(ref _zeroerQueued, 1, 0) == 0)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static memory => memory.RunZeroer(), this, preferLocal: false);
        }
    }

    private void RunZeroer()
    {
        // Increment, then read the release mark: Dispose sets the mark, then waits for this count to be zero, so
        // either it waits for this run or this run sees the mark (both sides are full fences).
        Interlocked.Increment(ref _zeroerActive);
        try
        {
            Span<int> batch = stackalloc int[16];
            while (Volatile.Read(ref _releasing) == 0)
            {
                int n = 0;
                Concurrency.SpinWord.Enter(ref _lock);
                while (n < batch.Length && _dirtyCount > 0)
                {
                    batch[n++] = _dirtyStack![--_dirtyCount];
                }
                _inZeroer = n;
                Concurrency.SpinWord.Exit(ref _lock);
                if (n == 0)
                {
                    break;
                }
                foreach (int pfn in batch[..n])
                {
                    Clear(pfn);
                    // Published by the push under the lock below, as a freeing writer's flag is.
                    _frames[pfn].Zeroed = true;
                }
                Concurrency.SpinWord.Enter(ref _lock);
                foreach (int pfn in batch[..n])
                {
                    _freeStack[_freeCount++] = pfn;
                }
                _inZeroer = 0;
                Concurrency.SpinWord.Exit(ref _lock);
                Interlocked.Add(ref _zeroedInBackground, n);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _zeroerActive);
            Interlocked.Exchange(ref _zeroerQueued, 0);
        }
        // A free that found the run still queued did not queue another: look once more after the reset.
        if (Volatile.Read(ref _dirtyCount) > 0 && Volatile.Read(ref _releasing) == 0)
        {
            QueueZeroer();
        }
    }

    /// <summary>Returns one frame to the free list.</summary>
    public void Free(int pfn) => FreeBatch([pfn]);

    /// <summary><c>get_page</c>: one more reference. The caller already holds one, or holds the PTE lock of an entry mapping it.</summary>
    /// <remarks>Full fence; pairs with the decrement of <see cref="Put"/>, so the last put sees every get before it.</remarks>
    public void Get(long pfn) => Interlocked.Increment(ref _frames[ReferenceHolder(pfn)].RefCount);

    /// <summary>
    /// <c>get_page_unless_zero</c> (<c>folio_try_get</c>): one more reference unless the count is already zero (the
    /// frame is being freed or is free). For a lockless lookup that found the pfn without holding a reference: the
    /// caller must check afterwards that the frame is still the one it looked up (<c>xas_reload</c>), and
    /// <see cref="Put"/> it if not, since it may have been freed and handed out again in between.
    /// </summary>
    public bool TryGet(long pfn)
    {
        ref int count = ref _frames[ReferenceHolder(pfn)].RefCount;
        // Full fence per attempt; pairs with Put's decrement: an increment from a nonzero count cannot revive a frame
        // whose last put already happened, since that put left zero and the CAS would not match.
        int seen = Volatile.Read(ref count);
        while (seen > 0)
        {
            int before = Interlocked.CompareExchange(ref count, seen + 1, seen);
            if (before == seen)
            {
                return true;
            }
            seen = before;
        }
        return false;
    }

    /// <summary>
    /// <c>put_page</c>: drops a reference, freeing the frame when it was the last. Only for a reference that backs no
    /// translation any Cpu may still hold: a mapping's reference is dropped through an <c>MmuGather</c> after its
    /// flush, so a count that reaches zero here proves no TLB of any address space over this arena maps the frame.
    /// </summary>
    public void Put(long pfn)
    {
        long holder = ReferenceHolder(pfn);
        // Full fence: orders this owner's last use of the frame before the free that the last put performs.
        if (Interlocked.Decrement(ref _frames[holder].RefCount) == 0)
        {
            FreeUnreferenced(holder);
        }
    }

    /// <summary>Drops one reference on each frame (<c>release_pages</c>), freeing those that reach zero; see <see cref="Put"/>.</summary>
    public void PutBatch(ReadOnlySpan<int> frames)
    {
        // Frames to free are collected on the stack and freed a chunk at a time (one allocator lock a chunk).
        Span<int> unreferenced = stackalloc int[256];
        int count = 0;
        foreach (int frame in frames)
        {
            long pfn = ReferenceHolder(frame);
            // Full fence, as in Put.
            if (Interlocked.Decrement(ref _frames[pfn].RefCount) == 0)
            {
                if (IsHugeHead(pfn))
                {
                    FreeHuge(pfn);
                    continue;
                }
                unreferenced[count++] = (int)pfn;
                if (count == unreferenced.Length)
                {
                    FreeBatch(unreferenced);
                    count = 0;
                }
            }
        }
        if (count > 0)
        {
            FreeBatch(unreferenced[..count]);
        }
    }

    /// <summary>Sets state bits of a frame (<c>SetPageDirty</c> and the like).</summary>
    /// <remarks>Full fence; pairs with the acquire read of <see cref="HasFlags"/>.</remarks>
    public void SetFlags(long pfn, FrameFlags flags) => Interlocked.Or(ref _frames[pfn].Flags, (int)flags);

    /// <summary>Clears state bits of a frame.</summary>
    /// <remarks>Full fence; pairs with the acquire read of <see cref="HasFlags"/>.</remarks>
    public void ClearFlags(long pfn, FrameFlags flags) => Interlocked.And(ref _frames[pfn].Flags, ~(int)flags);

    /// <summary>True when every bit of <paramref name="flags"/> is set.</summary>
    /// <remarks>Acquire read; pairs with the Interlocked update in <see cref="SetFlags"/> / <see cref="ClearFlags"/>.</remarks>
    public bool HasFlags(long pfn, FrameFlags flags) => (Volatile.Read(ref _frames[pfn].Flags) & (int)flags) == (int)flags;

    /// <summary>
    /// <c>wp_can_reuse_anon_folio</c>: may a write fault make this anonymous frame writable in place? Yes when it is
    /// marked <see cref="FrameFlags.AnonExclusive"/>, or when the one mapping being faulted on holds the only
    /// reference (then it is marked exclusive again). The caller holds the PTE lock of the entry mapping it, which
    /// keeps a second mapping from appearing (duplicating a mapping takes the source entry's lock).
    /// </summary>
    public bool IsExclusiveAnonymous(long pfn)
    {
        ref FrameInfo info = ref _frames[pfn];
        if (info.Kind != FrameKind.Anonymous)
        {
            return false;
        }
        if (HasFlags(pfn, FrameFlags.AnonExclusive))
        {
            return true;
        }
        // Acquire reads; pair with the Interlocked updates of Get/Put and of the gather's map-count drop.
        if (Volatile.Read(ref info.MapCount) != 1
            || (Volatile.Read(ref _frames[ReferenceHolder(pfn)].RefCount) != 1 && !IsSplitBlockUnreferenced(pfn)))
        {
            return false;
        }
        SetFlags(pfn, FrameFlags.AnonExclusive);
        return true;
    }

    /// <summary>
    /// <c>folio_try_dup_anon_rmap</c> plus <c>get_page</c>: a second page-table entry (another address space's, once
    /// fork exists) will map this frame; it is no longer exclusive. Called with the source entry's PTE lock held.
    /// </summary>
    public void DuplicateMapping(long pfn)
    {
        ref FrameInfo info = ref _frames[pfn];
        // Full fences; pair with the acquire reads of the counts in IsExclusiveAnonymous and the decrements of Put
        // and MmuGather.RemoveMapping.
        Interlocked.Increment(ref _frames[ReferenceHolder(pfn)].RefCount);
        Interlocked.Increment(ref info.MapCount);
        ClearFlags(pfn, FrameFlags.AnonExclusive);
    }

    /// <summary>
    /// <c>try_grab_folio(FOLL_PIN)</c>: one pin and one reference. The caller holds the PTE lock of an entry mapping the
    /// frame (so it cannot be freed meanwhile).
    /// </summary>
    public void Pin(long pfn)
    {
        // Full fences; pair with the acquire read in IsPinned and the decrements of Unpin and Put.
        Interlocked.Increment(ref _frames[ReferenceHolder(pfn)].RefCount);
        Interlocked.Increment(ref _frames[pfn].PinCount);
    }

    /// <summary>
    /// <c>unpin_user_page</c>: drops a pin and its reference, freeing the frame if that was the last reference (its
    /// mappings went away while it was pinned).
    /// </summary>
    public void Unpin(long pfn)
    {
        // Full fence, as in Pin; the pin goes before the reference, so a frame is never free while pinned.
        int left = Interlocked.Decrement(ref _frames[pfn].PinCount);
        Debug.Assert(left >= 0, "unpinned more often than pinned");
        Put(pfn);
    }

    /// <summary>
    /// <c>folio_maybe_dma_pinned</c>: someone (a device, in the kernel's words) may be reading or writing the frame's
    /// memory behind every page table. Fork copies such a private anonymous frame for the child instead of sharing it;
    /// the hook for reclaim, migration and THP collapse, which must leave a pinned frame where it is.
    /// </summary>
    /// <remarks>Acquire read; pairs with the Interlocked updates of <see cref="Pin"/> and <see cref="Unpin"/>.</remarks>
    public bool IsPinned(long pfn) => Volatile.Read(ref _frames[pfn].PinCount) > 0;

    /// <summary>Address spaces using this arena (acquire read; pairs with AddUser's and Dispose's Interlocked updates).</summary>
    public int Users => Volatile.Read(ref _users);

    /// <summary>
    /// Another address space starts using this arena (<c>mmgrab</c> on shared memory): <see cref="Dispose"/> must be
    /// called once more before the arena goes back to the host.
    /// </summary>
    public void AddUser()
    {
        // Full fence; pairs with the decrement in Dispose. A user can only be added by one that still holds the arena.
        int before = Interlocked.Increment(ref _users) - 1;
        ObjectDisposedException.ThrowIf(before <= 0, this);
    }

    /// <summary>
    /// <see cref="AddUser"/> unless the last user is gone already (the arena went back to the host): false then, and
    /// nothing changed. For a holder of a reference to the arena that is not one of its users (a memory group).
    /// </summary>
    public bool TryAddUser()
    {
        int users = Volatile.Read(ref _users);
        while (users > 0)
        {
            // Full fence; pairs with Dispose's decrement: once it reached zero no increment can revive the arena.
            int seen = Interlocked.CompareExchange(ref _users, users + 1, users);
            if (seen == users)
            {
                return true;
            }
            users = seen;
        }
        return false;
    }

    /// <summary>
    /// <c>copy_user_highpage</c>: fills a freshly allocated frame with another frame's contents. The caller holds a
    /// reference on <paramref name="source"/>, so it cannot be freed meanwhile.
    /// </summary>
    public void Copy(long source, long destination)
    {
        ref FrameInfo info = ref _frames[destination];
        if (PoisonFreedFrames && !info.Zeroed)
        {
            CheckPoison(destination);
        }
        new ReadOnlySpan<byte>(FrameAddress(source), FrameSize).CopyTo(new Span<byte>(FrameAddress(destination), FrameSize));
        info.Zeroed = false;
    }

    /// <summary><c>clear_page</c>: zero a frame. This is the floor of a first-touch fault.</summary>
    public void Clear(long pfn) => new Span<byte>(FrameAddress(pfn), FrameSize).Clear();

    /// <summary>
    /// Makes an allocated frame's contents zero before its first use (clearing only if it was not zeroed when freed)
    /// and marks it as about to be written.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void PrepareZeroed(long pfn)
    {
        ref FrameInfo info = ref _frames[pfn];
        if (!info.Zeroed)
        {
            if (PoisonFreedFrames)
            {
                CheckPoison(pfn);
            }
            else if (_dirtyStack is not null)
            {
                Interlocked.Increment(ref _zeroedOnDemand);
            }
            Clear(pfn);
        }
        info.Zeroed = false;
    }

    /// <summary>Frames found written after they were freed (poisoning runs only): a stale translation was used.</summary>
    public long PoisonViolations => Interlocked.Read(ref _poisonViolations);

    private long _poisonViolations;

    // A freed frame must still hold the poison when it is handed out again; anything else was written through a
    // translation that outlived the frame's mapping.
    private void CheckPoison(long pfn)
    {
        if (new ReadOnlySpan<byte>(FrameAddress(pfn), FrameSize).IndexOfAnyExcept(PoisonByte) >= 0)
        {
            Interlocked.Increment(ref _poisonViolations);
        }
    }

    /// <summary>Records that an allocated frame prepared with <see cref="PrepareZeroed"/> was never written.</summary>
    public void MarkUnused(long pfn) => _frames[pfn].Zeroed = true;

    /// <summary>
    /// Drops one user; the last returns the arena to the host. That caller guarantees nothing touches a frame any more
    /// (every user's Cpus are gone).
    /// </summary>
    public void Dispose()
    {
        // Full fence; pairs with AddUser's increment.
        if (Interlocked.Decrement(ref _users) == 0)
        {
            // No zeroer run may touch the arena once it is gone: mark, then wait for the runs already inside.
            Interlocked.Exchange(ref _releasing, 1);
            var spinner = new SpinWait();
            while (Volatile.Read(ref _zeroerActive) != 0)
            {
                spinner.SpinOnce();
            }
            _arena.Dispose();
            UnchargeAll();
        }
    }

    /// <summary>
    /// <c>kernel_poison_pages</c> on the per-cpu free path (<c>free_unref_page</c> → <c>free_pages_prepare</c>): a frame
    /// its allocator fills and then gives back unpublished (a copy-on-write fault that lost its race) is poisoned like
    /// any freed frame, unless it is still zero. Its next allocation checks the poison; without this that check would
    /// read the abandoned copy as a write through a stale translation. Called by the frame's only user.
    /// </summary>
    public void PoisonReturned(int pfn)
    {
        ref FrameInfo info = ref _frames[pfn];
        if (PoisonFreedFrames && !info.Zeroed)
        {
            new Span<byte>(FrameAddress(pfn), FrameSize).Fill(PoisonByte);
        }
    }
}
