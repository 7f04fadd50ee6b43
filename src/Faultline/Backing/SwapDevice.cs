using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// One swap area in use (the kernel's <c>swap_info_struct</c>): the area's slots, the use count of each
/// (<c>swap_map</c>: page-table entries referencing the slot, plus <see cref="HasCache"/> while a frame for it sits in
/// the swap cache), the free slots with per-CPU slot caches, and the swap cache itself (<c>swapper_spaces</c>: slot →
/// frame, a <see cref="PageIndex"/> read without locks).
/// </summary>
/// <remarks>
/// Thread-safety: every member is thread-safe. Use counts change with compare-and-swap; the free list and the cache
/// index's writers take the device's spin locks (leaves in the lock order); cache lookups take none. A slot returns
/// to the free list when its count is 0 and it has no cached frame.
/// </remarks>
internal sealed class SwapDevice
{
    /// <summary><c>SWAP_HAS_CACHE</c>: a frame for the slot is in (or is being added to) the swap cache.</summary>
    public const int HasCache = 1 << 30;

    private readonly int[] _map;
    private readonly long[] _free;
    private int _freeCount;
    private int _freeLock;
    private readonly SwapSlotCache[] _cpuCaches;
    private readonly PageIndex _cache;
    private readonly List<int> _removed = [];
    private int _cacheLock;
    private long _cachedFrames;

    /// <summary>A device of type <paramref name="type"/> over <paramref name="area"/>; slot 0 is never handed out.</summary>
    public SwapDevice(int type, ISwapArea area)
    {
        Type = type;
        Area = area;
        _map = new int[area.Slots];
        _free = new long[area.Slots];
        // Lowest slots on top, so a quiet device fills from its start.
        for (long slot = area.Slots - 1; slot >= 1; slot--)
        {
            _free[_freeCount++] = slot;
        }
        _cpuCaches = new SwapSlotCache[Environment.ProcessorCount];
        for (int i = 0; i < _cpuCaches.Length; i++)
        {
            _cpuCaches[i] = new SwapSlotCache();
        }
        _cache = new PageIndex((ulong)area.Slots);
    }

    /// <summary><c>swp_type</c> of this device's entries.</summary>
    public int Type { get; }

    /// <summary>The storage.</summary>
    public ISwapArea Area { get; }

    /// <summary>Slots that can hold a page (slot 0 excluded): <c>SwapTotal</c> in pages.</summary>
    public long UsableSlots => Area.Slots - 1;

    /// <summary>Slots on the free list or in a slot cache: <c>SwapFree</c> in pages (a snapshot).</summary>
    public long FreeSlots
    {
        get
        {
            long free = Volatile.Read(ref _freeCount);
            foreach (SwapSlotCache cache in _cpuCaches)
            {
                free += cache.Count;
            }
            return free;
        }
    }

    /// <summary>Frames in the swap cache now (<c>/proc/meminfo</c> <c>SwapCached</c>).</summary>
    public long CachedFrames => Interlocked.Read(ref _cachedFrames);

    /// <summary>
    /// <c>folio_alloc_swap</c>: a free slot, its count 0 with <see cref="HasCache"/> set (the caller adds the frame to
    /// the cache next). Takes from this CPU's slot cache, refilling it from the free list. False when the device is full.
    /// </summary>
    public bool TryAllocate(out long slot)
    {
        SwapSlotCache cache = _cpuCaches[(uint)Thread.GetCurrentProcessorId() % (uint)_cpuCaches.Length];
        bool took = false;
        slot = 0;
        if (cache.TryEnter())
        {
            if (!cache.TryTake(out slot))
            {
                cache.Filled(TakeFree(cache.Room[..(SwapSlotCache.Capacity / 2)]));
            }
            took = slot != 0 || cache.TryTake(out slot);
            cache.Exit();
        }
        if (!took)
        {
            Span<long> one = stackalloc long[1];
            took = TakeFree(one) == 1;
            slot = one[0];
        }
        if (took)
        {
            // Release: the count is set before any entry naming the slot can be published.
            Volatile.Write(ref _map[slot], HasCache);
        }
        return took;
    }

    /// <summary><c>swap_duplicate</c>: one more page-table entry references the slot.</summary>
    public void Duplicate(long slot)
    {
        int after = Interlocked.Increment(ref _map[slot]);
        Debug.Assert((after & ~HasCache) > 0 && (after & ~HasCache) < HasCache, "duplicate of a free slot");
    }

    /// <summary>
    /// <c>swap_free</c>: one page-table entry referencing the slot went away. Returns the references left; the slot is
    /// freed when none is left and no frame is cached for it.
    /// </summary>
    public int Release(long slot)
    {
        int after = Interlocked.Decrement(ref _map[slot]);
        Debug.Assert((after & ~HasCache) >= 0, "swap_free of an unreferenced slot");
        if (after == 0)
        {
            FreeSlot(slot);
        }
        return after & ~HasCache;
    }

    /// <summary><c>swp_swapcount</c>: page-table entries referencing the slot now.</summary>
    public int UseCount(long slot) => Volatile.Read(ref _map[slot]) & ~HasCache;

    /// <summary>True while a frame for the slot is in (or is being added to) the swap cache.</summary>
    public bool IsCached(long slot) => (Volatile.Read(ref _map[slot]) & HasCache) != 0;

    /// <summary>
    /// <c>swapcache_prepare</c>: claims the right to read the slot into a new frame and add it to the cache. False when
    /// someone else holds it (a reader in flight, or a frame already cached) or the slot has no user left (a stale
    /// entry: the caller's PTE changed).
    /// </summary>
    public bool TryClaimCache(long slot)
    {
        int seen = Volatile.Read(ref _map[slot]);
        while ((seen & HasCache) == 0 && seen > 0)
        {
            int before = Interlocked.CompareExchange(ref _map[slot], seen | HasCache, seen);
            if (before == seen)
            {
                return true;
            }
            seen = before;
        }
        return false;
    }

    /// <summary>
    /// <c>put_swap_folio</c>/<c>swapcache_clear</c>: gives up the claim (the frame left the cache, or a claimed read
    /// was abandoned); the slot is freed if no entry references it.
    /// </summary>
    public void ReleaseCache(long slot)
    {
        int after = Interlocked.Add(ref _map[slot], -HasCache);
        Debug.Assert(after >= 0, "cache claim released twice");
        if (after == 0)
        {
            FreeSlot(slot);
        }
    }

    /// <summary>
    /// <c>swap_cache_get_folio</c>'s lookup: the frame cached for the slot, or 0. Lock-free (acquire loads pairing with
    /// <see cref="InsertCache"/>'s release store); the caller takes a reference with <c>TryGet</c> and re-checks.
    /// </summary>
    public int LookupCache(long slot) => _cache.Lookup((ulong)slot);

    /// <summary>
    /// <c>add_to_swap_cache</c>: publishes <paramref name="pfn"/> for the slot, whose claim the caller holds. The frame's
    /// <see cref="FrameInfo.SwapEntry"/>, flags and contents are set first; the cache holds one reference, taken here.
    /// </summary>
    public void InsertCache(PhysicalMemory memory, long slot, int pfn)
    {
        memory.Get(pfn);
        SpinWord.Enter(ref _cacheLock);
        bool inserted = _cache.TryInsert((ulong)slot, pfn);
        SpinWord.Exit(ref _cacheLock);
        Debug.Assert(inserted, "a claimed slot had a cached frame");
        Interlocked.Increment(ref _cachedFrames);
    }

    /// <summary>
    /// <c>__delete_from_swap_cache</c>: takes <paramref name="pfn"/> out of the cache if it is the slot's frame (false
    /// otherwise). The caller then clears the frame's swap state, gives up the claim (<see cref="ReleaseCache"/>) and
    /// drops the cache's reference.
    /// </summary>
    public bool RemoveCache(long slot, int pfn)
    {
        SpinWord.Enter(ref _cacheLock);
        bool removed = _cache.Lookup((ulong)slot) == pfn;
        if (removed)
        {
            _cache.RemoveRange((ulong)slot, (ulong)slot + 1, _removed);
            _removed.Clear();
        }
        SpinWord.Exit(ref _cacheLock);
        if (removed)
        {
            Interlocked.Decrement(ref _cachedFrames);
        }
        return removed;
    }

    private int TakeFree(Span<long> into)
    {
        SpinWord.Enter(ref _freeLock);
        int n = Math.Min(into.Length, _freeCount);
        for (int i = 0; i < n; i++)
        {
            into[i] = _free[--_freeCount];
        }
        SpinWord.Exit(ref _freeLock);
        return n;
    }

    // swap_entry_range_free: the slot's contents go and the slot returns to this CPU's cache, or the free list.
    private void FreeSlot(long slot)
    {
        Area.Discard(slot);
        SwapSlotCache cache = _cpuCaches[(uint)Thread.GetCurrentProcessorId() % (uint)_cpuCaches.Length];
        if (cache.TryEnter())
        {
            bool kept = cache.TryKeep(slot);
            cache.Exit();
            if (kept)
            {
                return;
            }
        }
        SpinWord.Enter(ref _freeLock);
        _free[_freeCount++] = slot;
        SpinWord.Exit(ref _freeLock);
    }
}
