namespace Faultline.Cli.Replay;

/// <summary>
/// A trace cut for the benchmark: its calls in order, each followed by the touches made before the next call. The
/// touches are the recorded page faults; a trace without them touches each page of each successful anonymous mmap
/// once, right after it (a write where the mapping is writable, else a read; none where it is PROT_NONE), by the
/// mapping thread. Calls run one at a time, in order; the touches between two calls run concurrently, each recorded
/// thread's on its own worker.
/// </summary>
internal sealed class ReplayPlan
{
    private ReplayPlan(Trace trace, IReadOnlyList<ReplaySegment> segments, IReadOnlyList<int> threads, bool synthetic)
    {
        Trace = trace;
        Segments = segments;
        Threads = threads;
        SyntheticTouches = synthetic;
    }

    /// <summary>The trace.</summary>
    public Trace Trace { get; }

    /// <summary>Calls with their touches, in order.</summary>
    public IReadOnlyList<ReplaySegment> Segments { get; }

    /// <summary>The recorded threads, in order of their first event.</summary>
    public IReadOnlyList<int> Threads { get; }

    /// <summary>True when the touches were made up (the trace has no faults).</summary>
    public bool SyntheticTouches { get; }

    /// <summary>Touches in one replay.</summary>
    public long TouchCount => Segments.Sum(s => (long)s.Touches.Count);

    /// <summary>Calls (memory and process calls) in one replay.</summary>
    public long CallCount => Segments.Count(s => s.Call is not null);

    /// <summary>The worker that replays recorded thread <paramref name="tid"/> when there are <paramref name="workers"/>.</summary>
    public int WorkerOf(int tid, int workers) => Math.Max(0, IndexOf(tid)) % workers;

    private int IndexOf(int tid)
    {
        for (int i = 0; i < Threads.Count; i++)
        {
            if (Threads[i] == tid)
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Cuts <paramref name="trace"/> into segments.</summary>
    public static ReplayPlan Create(Trace trace)
    {
        var segments = new List<ReplaySegment>();
        TraceCall? call = null;
        var touches = new List<TraceFault>();
        var threads = new List<int>();
        bool synthetic = !trace.FaultsRecorded || trace.Faults.Count == 0;
        foreach (ReplayEvent e in ReplayEvent.Order(trace))
        {
            if (!threads.Contains(e.Tid))
            {
                threads.Add(e.Tid);
            }
            if (e.Fault is { } fault)
            {
                touches.Add(fault);
                continue;
            }
            if (call is not null || touches.Count > 0)
            {
                segments.Add(new ReplaySegment(call, touches));
            }
            call = e.Call;
            touches = synthetic ? Touches(e.Call!) : [];
        }
        if (call is not null || touches.Count > 0)
        {
            segments.Add(new ReplaySegment(call, touches));
        }
        return new ReplayPlan(trace, segments, threads, synthetic);
    }

    // One touch per page of a successful anonymous mmap that can be read.
    private static List<TraceFault> Touches(TraceCall call)
    {
        if (call.Name != "mmap" || call.Errno is not null || call.Args.Count < 4)
        {
            return [];
        }
        ulong prot, flags, start, length;
        try
        {
            (prot, flags, start, length) = (ArgumentText.Value(call.Args[2]), ArgumentText.Value(call.Args[3]),
                ArgumentText.Value(call.Result), ArgumentText.Value(call.Args[1]));
        }
        catch (FormatException)
        {
            return [];
        }
        if ((flags & (ulong)MapFlags.Anonymous) == 0 || (prot & 3) == 0)
        {
            return [];
        }
        AccessKind access = (prot & 2) != 0 ? AccessKind.Write : AccessKind.Read;
        var touches = new List<TraceFault>();
        for (ulong page = start; page < start + length; page += PageGeometry.PageSize)
        {
            touches.Add(new TraceFault(call.Tid, call.Time, page, access));
        }
        return touches;
    }
}
