using Faultline.Concurrency;

namespace Faultline.Backing;

/// <summary>
/// One CPU's stash of free swap slots (the kernel's <c>swap_slots_cache</c>): filled from and drained to the
/// device's free list in batches, so reclaim on several threads takes the device's lock once a batch.
/// </summary>
/// <remarks>Thread-safety: guarded by its own spin lock, taken only with <see cref="TryEnter"/> (a thread that finds it
/// busy uses the device's list instead, as the kernel falls back when its cache is being refilled).</remarks>
internal sealed class SwapSlotCache
{
    /// <summary>Slots a cache holds at most.</summary>
    public const int Capacity = 64;

    private readonly long[] _slots = new long[Capacity];
    private int _lock;

    /// <summary>Slots held now (read under the lock; a racy snapshot otherwise).</summary>
    public int Count { get; private set; }

    /// <summary>Takes the cache's lock if it is free.</summary>
    public bool TryEnter() => SpinWord.TryEnter(ref _lock);

    /// <summary>Releases the cache's lock.</summary>
    public void Exit() => SpinWord.Exit(ref _lock);

    /// <summary>Under the lock: takes a slot, or false when empty.</summary>
    public bool TryTake(out long slot)
    {
        if (Count == 0)
        {
            slot = 0;
            return false;
        }
        slot = _slots[--Count];
        return true;
    }

    /// <summary>Under the lock: keeps a freed slot, or false when full.</summary>
    public bool TryKeep(long slot)
    {
        if (Count == Capacity)
        {
            return false;
        }
        _slots[Count++] = slot;
        return true;
    }

    /// <summary>Under the lock: the space to refill into (the free part of the array).</summary>
    public Span<long> Room => _slots.AsSpan(Count);

    /// <summary>Under the lock: <paramref name="n"/> slots were written into <see cref="Room"/>.</summary>
    public void Filled(int n) => Count += n;
}
