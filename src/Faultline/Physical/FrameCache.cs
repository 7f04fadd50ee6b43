namespace Faultline.Physical;

/// <summary>
/// A per-Cpu stash of free frames (the kernel's per-cpu page lists, <c>pcp</c>): refilled from and drained to
/// <see cref="PhysicalMemory"/> in batches, so a fault touches the global lock once per batch. Used by one thread.
/// </summary>
internal sealed class FrameCache
{
    private const int Capacity = 64;
    private const int Batch = 32;

    private readonly PhysicalMemory _memory;
    private readonly int[] _frames = new int[Capacity];
    private int _count;

    /// <summary>Creates an empty cache over <paramref name="memory"/>.</summary>
    public FrameCache(PhysicalMemory memory) => _memory = memory;

    /// <summary>Takes a frame (refcount 1, contents undefined) or returns <see cref="PhysicalMemory.NoFrame"/>.</summary>
    public int Allocate()
    {
        if (_count == 0)
        {
            _count = _memory.AllocateBatch(_frames.AsSpan(0, Batch));
            if (_count == 0)
            {
                return PhysicalMemory.NoFrame;
            }
        }
        return _frames[--_count];
    }

    /// <summary>Gives back a frame this Cpu allocated and never published (a fault that lost a race).</summary>
    public void Release(int pfn)
    {
        if (_count == Capacity)
        {
            Drain(Batch);
        }
        // mem_cgroup_cancel_charge: a frame that never became anyone's is no group's either.
        ChargeGroup.Uncharge(ref _memory.Info(pfn));
        // Poisoned now, as the arena's free does: the next Allocate hands it out as a freed frame.
        _memory.PoisonReturned(pfn);
        _frames[_count++] = pfn;
    }

    /// <summary>Returns every cached frame to the arena (the Cpu detaching).</summary>
    public void DrainAll() => Drain(_count);

    private void Drain(int n)
    {
        _memory.FreeBatch(_frames.AsSpan(_count - n, n));
        _count -= n;
    }
}
