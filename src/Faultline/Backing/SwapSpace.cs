using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// The swap areas of one arena (the kernel's <c>swap_info[]</c>, by type) and the operations on swap entries that
/// page-table walkers and faults need: allocation, duplication at fork, freeing at zap, the swap cache.
/// </summary>
/// <remarks>
/// Thread-safety: every member is thread-safe (see <see cref="SwapDevice"/>). Disposal: <see cref="Dispose"/> closes
/// the areas; the owner calls it once no address space over the arena is left.
/// </remarks>
internal sealed class SwapSpace : ISwapEntries, IDisposable
{
    private readonly PhysicalMemory _memory;
    private readonly SwapDevice[] _devices;

    /// <summary>Swap over <paramref name="areas"/>, typed 0, 1, … in order (the first has the highest priority).</summary>
    public SwapSpace(PhysicalMemory memory, IReadOnlyList<ISwapArea> areas)
    {
        if (areas.Count is 0 or > SwapEntry.MaxSwapFiles)
        {
            throw new ArgumentOutOfRangeException(nameof(areas), $"1 to {SwapEntry.MaxSwapFiles} areas");
        }
        _memory = memory;
        _devices = new SwapDevice[areas.Count];
        for (int type = 0; type < areas.Count; type++)
        {
            _devices[type] = new SwapDevice(type, areas[type]);
        }
    }

    /// <summary>The devices, by type.</summary>
    public IReadOnlyList<SwapDevice> Devices => _devices;

    /// <summary><c>SwapTotal</c> in pages.</summary>
    public long TotalPages => _devices.Sum(d => d.UsableSlots);

    /// <summary><c>SwapFree</c> in pages (a snapshot).</summary>
    public long FreePages => _devices.Sum(d => d.FreeSlots);

    /// <summary><c>SwapCached</c> in pages (a snapshot).</summary>
    public long CachedPages => _devices.Sum(d => d.CachedFrames);

    /// <summary>The device of a swap entry, or null for a non-swap entry or a type no area has.</summary>
    public SwapDevice? DeviceOf(SwapEntry entry) => (uint)entry.Type < (uint)_devices.Length ? _devices[entry.Type] : null;

    /// <summary><c>folio_alloc_swap</c>: a slot on the first device with room (count 0, cache claimed). False when all are full.</summary>
    public bool TryAllocate(out SwapEntry entry)
    {
        foreach (SwapDevice device in _devices)
        {
            if (device.TryAllocate(out long slot))
            {
                entry = new SwapEntry(device.Type, slot);
                return true;
            }
        }
        entry = default;
        return false;
    }

    /// <inheritdoc/>
    public void Duplicate(SwapEntry entry) => DeviceOf(entry)?.Duplicate(entry.Offset);

    /// <inheritdoc/>
    public int UseCount(SwapEntry entry) => DeviceOf(entry)?.UseCount(entry.Offset) ?? 0;

    /// <summary>
    /// <c>free_swap_and_cache</c>: drops a page-table entry's reference; when it was the last and the slot's frame sits
    /// unlocked in the cache, the frame leaves the cache too (<c>__try_to_reclaim_swap</c>, and the zap's
    /// <c>free_swap_cache</c> for one still mapped elsewhere: no entry names the slot any more), freeing the slot. A frame
    /// locked by reclaim or a swap-in stays: its holder sees the count at 0 and drops it.
    /// </summary>
    public void Free(SwapEntry entry)
    {
        SwapDevice? device = DeviceOf(entry);
        if (device is null || device.Release(entry.Offset) != 0 || !device.IsCached(entry.Offset))
        {
            return;
        }
        int pfn = device.LookupCache(entry.Offset);
        if (pfn == 0 || !_memory.TryGet(pfn))
        {
            return;
        }
        // folio_trylock: the frame bit is taken with an atomic or; whoever set it first owns the frame.
        if (device.LookupCache(entry.Offset) == pfn && TryLock(pfn))
        {
            FreeIfUnused(pfn);
            UnlockAndFreeIfUnused(pfn);
        }
        _memory.Put(pfn);
    }

    /// <summary>
    /// <c>folio_free_swap</c> of a frame the caller holds locked and referenced: it leaves the swap cache when no
    /// page-table entry references its slot any more. True when it did.
    /// </summary>
    public bool FreeIfUnused(int pfn)
    {
        if (!_memory.HasFlags(pfn, FrameFlags.SwapCache))
        {
            return false;
        }
        SwapEntry entry = SwapEntry.FromPte(_memory.Info(pfn).SwapEntry);
        SwapDevice? device = DeviceOf(entry);
        return device is not null && device.UseCount(entry.Offset) == 0 && RemoveFromCache(device, entry.Offset, pfn);
    }

    /// <summary>
    /// <c>folio_unlock</c> of a swap-cache frame the caller holds referenced, then <see cref="FreeIfUnused"/> again if
    /// the slot lost its last entry meanwhile: a <see cref="Free"/> that found the frame locked left that to whoever
    /// unlocks it, so whoever unlocks last sees the count at 0 (the unlock and the count's decrement are both full fences).
    /// </summary>
    public void UnlockAndFreeIfUnused(int pfn)
    {
        while (true)
        {
            _memory.ClearFlags(pfn, FrameFlags.Locked);
            if (!_memory.HasFlags(pfn, FrameFlags.SwapCache) || UseCount(SwapEntry.FromPte(_memory.Info(pfn).SwapEntry)) != 0
                || !TryLock(pfn))
            {
                return;
            }
            FreeIfUnused(pfn);
        }
    }

    /// <summary>
    /// <c>folio_trylock</c>: takes <see cref="FrameFlags.Locked"/> on a frame the caller holds a reference to (reclaim
    /// and swap-in lock a swap-cache frame while they change its cache state). False when someone else holds it.
    /// </summary>
    public bool TryLock(long pfn) =>
        // Full fence; pairs with the ClearFlags that unlocks.
        (Interlocked.Or(ref _memory.Info(pfn).Flags, (int)FrameFlags.Locked) & (int)FrameFlags.Locked) == 0;

    /// <summary>
    /// <c>delete_from_swap_cache</c> of a locked frame the caller holds a reference to: out of the index, its swap state
    /// cleared, the claim given up (freeing the slot if no entry references it), the cache's reference dropped.
    /// False when the frame was not the slot's cached frame.
    /// </summary>
    public bool RemoveFromCache(SwapDevice device, long slot, int pfn)
    {
        if (!device.RemoveCache(slot, pfn))
        {
            return false;
        }
        _memory.ClearFlags(pfn, FrameFlags.SwapCache);
        _memory.Info(pfn).SwapEntry = 0;
        device.ReleaseCache(slot);
        _memory.Put(pfn);
        return true;
    }

    /// <summary>Closes every area.</summary>
    public void Dispose()
    {
        foreach (SwapDevice device in _devices)
        {
            device.Area.Dispose();
        }
    }
}
