namespace Faultline.VmStat;

/// <summary>
/// One Cpu's event counts (the kernel's per-cpu vm_event_states): written only by the owning thread with plain
/// increments, read by anyone as a slightly stale sum. Shared writers use <see cref="AddShared"/>.
/// </summary>
internal sealed class EventCounters
{
    private readonly long[] _counts = new long[EventNames.Count];

    /// <summary>Counts one event; owner thread only.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Add(VmEvent e, long n = 1) => _counts[(int)e] += n;

    /// <summary>Counts an event from any thread.</summary>
    public void AddShared(VmEvent e, long n = 1) => Interlocked.Add(ref _counts[(int)e], n);

    /// <summary>Reads one count (may lag the owner's latest increments).</summary>
    public long Read(VmEvent e) => Volatile.Read(ref _counts[(int)e]);

    /// <summary>Adds every count into <paramref name="shared"/> (a short-lived context retiring).</summary>
    public void AddTo(EventCounters shared)
    {
        for (int i = 0; i < _counts.Length; i++)
        {
            shared.AddShared((VmEvent)i, Volatile.Read(ref _counts[i]));
        }
    }

    /// <summary>Adds every count into <paramref name="totals"/>.</summary>
    public void AccumulateInto(long[] totals)
    {
        for (int i = 0; i < _counts.Length; i++)
        {
            totals[i] += Volatile.Read(ref _counts[i]);
        }
    }
}
