using Faultline.Cli.Paths;
using Faultline.Cli.Replay;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// The lockstep of a <see cref="ReplayWorkload"/> run: every worker walks the plan's segments together; a segment's
/// call runs on its thread's worker while the others wait at a barrier, then the segment's touches run on their
/// threads' workers concurrently, then a barrier again. Runs of segments that involve one worker only need no barrier.
/// Whether to start another iteration is decided once, by worker 0 between the two barriers that start it.
/// </summary>
/// <remarks>Subclasses say how a call and a touch run; the barrier orders everything they share.</remarks>
internal abstract class ReplayRun : IWorkloadRun
{
    private readonly ReplayPlan _plan;
    private readonly int _workers;
    private readonly Barrier _barrier;
    private readonly int[] _owner;
    private bool _go;

    protected ReplayRun(ReplayPlan plan, int workers)
    {
        _plan = plan;
        _workers = workers;
        _barrier = new Barrier(workers);
        // Per segment: the only worker involved, or -1 when several are (or none).
        _owner = plan.Segments.Select(s =>
        {
            IEnumerable<int> involved = s.Touches.Select(t => plan.WorkerOf(t.Tid, workers));
            if (s.Call is not null)
            {
                involved = involved.Append(plan.WorkerOf(s.Call.Tid, workers));
            }
            int[] distinct = involved.Distinct().ToArray();
            return distinct.Length == 1 ? distinct[0] : -1;
        }).ToArray();
    }

    /// <summary>Prepares an iteration (one thread, the others waiting).</summary>
    protected abstract void BeginIteration();

    /// <summary>Ends an iteration (one thread, the others waiting).</summary>
    protected abstract void EndIteration();

    /// <summary>Runs a call on the calling worker; false when it was not replayed.</summary>
    protected abstract bool Call(TraceCall call, WorkerStats stats);

    /// <summary>Runs a touch on the calling worker; false when it was not replayed.</summary>
    protected abstract bool Touch(TraceFault touch, int worker, WorkerStats stats);

    /// <summary>Releases what the calling worker holds at the end of an iteration (its Cpus).</summary>
    protected virtual void ReleaseWorker(int worker)
    {
    }

    /// <inheritdoc />
    public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
    {
        while (true)
        {
            // Worker 0 decides and prepares while the others wait between the two barriers (which order its writes
            // before their reads).
            _barrier.SignalAndWait();
            if (worker == 0)
            {
                _go = !phase.StopRequested;
                if (_go)
                {
                    Guarded(BeginIteration, stats);
                }
            }
            _barrier.SignalAndWait();
            if (!_go)
            {
                return;
            }
            IReadOnlyList<ReplaySegment> segments = _plan.Segments;
            for (int i = 0; i < segments.Count; i++)
            {
                int owner = _owner[i];
                if (owner >= 0)
                {
                    // A run of segments of one worker: it runs them alone, the others skip to the barrier after them.
                    int end = i;
                    while (end + 1 < segments.Count && _owner[end + 1] == owner)
                    {
                        end++;
                    }
                    if (owner == worker)
                    {
                        for (int k = i; k <= end; k++)
                        {
                            RunSegment(segments[k], worker, stats, calls: true);
                        }
                    }
                    i = end;
                    _barrier.SignalAndWait();
                    continue;
                }
                if (segments[i].Call is { } call && _plan.WorkerOf(call.Tid, _workers) == worker)
                {
                    Count(() => Call(call, stats), stats, fault: false);
                }
                _barrier.SignalAndWait();
                RunSegment(segments[i], worker, stats, calls: false);
                _barrier.SignalAndWait();
            }
            Guarded(() => ReleaseWorker(worker), stats);
            _barrier.SignalAndWait();
            if (worker == 0)
            {
                Guarded(EndIteration, stats);
            }
        }
    }

    private void RunSegment(ReplaySegment segment, int worker, WorkerStats stats, bool calls)
    {
        if (calls && segment.Call is { } call)
        {
            Count(() => Call(call, stats), stats, fault: false);
        }
        foreach (TraceFault touch in segment.Touches)
        {
            if (_plan.WorkerOf(touch.Tid, _workers) == worker)
            {
                Count(() => Touch(touch, worker, stats), stats, fault: true);
            }
        }
    }

    // A failure is recorded, never thrown: a worker that left the lockstep would leave the others at the barrier.
    private static void Count(Func<bool> step, WorkerStats stats, bool fault)
    {
        try
        {
            if (step())
            {
                stats.Ops++;
                stats.Faults += fault ? 1 : 0;
            }
        }
        catch (Exception e)
        {
            stats.Fail($"replay: {e.GetType().Name}: {e.Message}");
        }
    }

    private static void Guarded(Action action, WorkerStats stats)
    {
        try
        {
            action();
        }
        catch (Exception e)
        {
            stats.Fail($"replay: {e.GetType().Name}: {e.Message}");
        }
    }
}
