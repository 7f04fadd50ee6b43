using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>pft</c> (Christoph Lameter's page-fault test): one large region, one VMA, shared by every thread; each thread
/// faults its own disjoint slice of 128 MiB and verifies it. Round by round: the last thread to arrive unmaps the old
/// region and maps the next one (inside the barrier), so the figure includes one map and unmap per round.
/// </summary>
internal sealed class PftWorkload : IWorkload
{
    /// <inheritdoc />
    public string Name => "pft";

    /// <inheritdoc />
    public string Description => "one shared VMA, each thread faults its own 128 MiB slice (faults/s)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)WorkloadSizes.Region;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target, shape.Threads);

    private sealed class WorkloadRun : IWorkloadRun
    {
        private readonly IMemoryTarget _target;
        private readonly ulong _length;
        private readonly Barrier _round;
        private PhaseControl? _phase;
        private volatile bool _stopRound;
        private ulong _region;
        private long _roundNumber;

        public WorkloadRun(IMemoryTarget target, int threads)
        {
            _target = target;
            _length = (ulong)threads * WorkloadSizes.Region;
            _round = new Barrier(threads, _ => NextRound());
        }

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            Volatile.Write(ref _phase, phase);
            while (true)
            {
                // Every worker leaves at the same round: the decision is taken once, in the post-phase action.
                _round.SignalAndWait();
                if (_stopRound)
                {
                    return;
                }
                ulong slice = _region + (ulong)worker * WorkloadSizes.Region;
                long salt = WorkloadSizes.Salt(worker, _roundNumber);
                try
                {
                    memory.StampPages(slice, WorkloadSizes.RegionPages, salt);
                    long bad = memory.VerifyPages(slice, WorkloadSizes.RegionPages, salt, out ulong firstBad);
                    if (bad != 0)
                    {
                        stats.Fail($"pft: {bad} pages with a wrong stamp in slice 0x{slice:x}, first at 0x{firstBad:x}");
                    }
                    stats.Ops++;
                    stats.Faults += WorkloadSizes.RegionPages;
                }
                catch (GuestAccessException e)
                {
                    // Keep the round protocol going: the other workers wait for this one at the barrier.
                    stats.Fail($"pft: {e.Message}");
                }
            }
        }

        // Runs on the last thread to arrive, with the others waiting.
        private void NextRound()
        {
            if (_region != 0)
            {
                _target.Unmap(_region, _length);
                _region = 0;
            }
            _stopRound = _phase!.StopRequested;
            if (!_stopRound)
            {
                _region = _target.Map(_length);
                _roundNumber++;
            }
        }
    }
}
