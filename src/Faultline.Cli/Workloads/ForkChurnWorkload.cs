using System.Diagnostics;
using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>fork-churn</c>: copy-on-write faults under mmap-lock contention. Round by round: the region (256 MiB unless
/// <c>--fork-mib</c>) is mapped, each of the <see cref="RunShape.Threads"/> faulting threads writes its slice, the
/// space forks and the child is kept (it maps every page, so every write of the parent copies), then each faulting
/// thread writes its slice again, one copy-on-write fault a page, timed; at the end of the round the child's view is
/// checked (the pre-fork stamps, none of the parent's writes) and the child and the region go. Meanwhile
/// <see cref="RunShape.Churn"/> threads run <see cref="MixedWorkload"/>'s map/mprotect/unmap loop on small unrelated
/// regions. Figures: copy-on-write faults/s while faulting and CPU per fault of the write loops. Faultline paths only:
/// the kernel reference program forks without churn.
/// </summary>
/// <param name="regionMib">Size of the region in MiB.</param>
internal sealed class ForkChurnWorkload(int regionMib = WorkloadSizes.ForkRegionMib) : IWorkload
{
    /// <summary>Size of the region in MiB.</summary>
    public int RegionMib => regionMib;

    private ulong Length => (ulong)regionMib << 20;

    /// <inheritdoc />
    public string Name => "fork-churn";

    /// <inheritdoc />
    public string Description => $"after a fork that shares {regionMib} MiB (child kept), threads copy-on-write their slices while churn threads map/mprotect/unmap";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool TimesItsFaults => true;

    /// <inheritdoc />
    public bool UsesChurn => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => 2 * (long)Length;

    /// <inheritdoc />
    public string? Unavailable(PathKind path) =>
        path == PathKind.Kernel ? "fork-churn: no kernel row (a .NET process cannot fork; the kernel's fork reference runs without churn)" : null;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) =>
        new WorkloadRun(target as FaultlineTarget ?? throw new ArgumentException(Unavailable(target.Path)), shape, Length);

    private sealed class WorkloadRun : IWorkloadRun
    {
        private readonly FaultlineTarget _target;
        private readonly RunShape _shape;
        private readonly ulong _length;
        private readonly long _slicePages;
        private readonly Barrier _round;
        private readonly Barrier _forked;
        private PhaseControl? _phase;
        private PhaseControl? _roundsPhase; // the phase the last round belonged to (the round barrier's action only)
        private volatile bool _stopRound;
        private ulong _region;
        private long _roundNumber;
        private AddressSpace? _child;
        private double _lastForkSeconds;
        private long _childMismatches;

        public WorkloadRun(FaultlineTarget target, RunShape shape, ulong length)
        {
            _target = target;
            _shape = shape;
            _length = length;
            _slicePages = (long)(length / WorkloadSizes.Page) / shape.Threads;
            if (_slicePages == 0)
            {
                throw new ArgumentException($"fork-churn: {length >> 20} MiB has fewer pages than {shape.Threads} threads");
            }
            _round = new Barrier(shape.Threads, _ => NextRound());
            _forked = new Barrier(shape.Threads, _ => Fork());
        }

        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            if (worker >= _shape.Threads)
            {
                while (!phase.StopRequested)
                {
                    MixedWorkload.ChurnIteration(_target, stats);
                }
                return;
            }
            Volatile.Write(ref _phase, phase);
            while (true)
            {
                // Every faulting worker leaves at the same round: the decision is taken once, in the post-phase action.
                _round.SignalAndWait();
                if (worker == 0 && Interlocked.Exchange(ref _childMismatches, 0) is var bad and not 0)
                {
                    stats.Fail($"fork-churn: the child read {bad} page(s) wrong (not the pre-fork stamp, or a write of the parent)");
                }
                if (_stopRound)
                {
                    return;
                }
                ulong slice = _region + (ulong)(worker * _slicePages) * WorkloadSizes.Page;
                long populated = WorkloadSizes.Salt(worker, _roundNumber);
                bool populatedOk = Guarded(stats, () => memory.StampPages(slice, _slicePages, populated));
                // Every faulting worker arrives, even one whose populate failed: the others wait for it here.
                _forked.SignalAndWait();
                if (worker == 0)
                {
                    stats.Fork.Forks++;
                    stats.Fork.ForkSeconds += _lastForkSeconds;
                }
                if (populatedOk)
                {
                    _ = Guarded(stats, () => WriteSlice(slice, populated, memory, stats));
                }
            }
        }

        private void WriteSlice(ulong slice, long populated, ThreadMemory memory, WorkerStats stats)
        {
            long written = populated ^ 0x0FA7_4E00;
            (double cpu, double wall) = ForkPages.Timed(() => memory.StampPages(slice, _slicePages, written, word: 1));
            stats.Faults += _slicePages;
            stats.FaultCpuSeconds += cpu;
            stats.FaultSeconds += wall;
            long wrong = ForkPages.CountWrong(memory, slice, _slicePages, populated, written, null);
            if (wrong != 0)
            {
                stats.Fail($"fork-churn: {wrong} page(s) of slice 0x{slice:x} read wrong after the parent's writes");
            }
            stats.Ops++;
        }

        // Keeps the round protocol going on a fault: the other workers wait for this one at the barriers.
        private static bool Guarded(WorkerStats stats, Action step)
        {
            try
            {
                step();
                return true;
            }
            catch (SegmentationFaultException e)
            {
                stats.Fail($"fork-churn: {e.Message}");
                return false;
            }
        }

        // Runs on the last faulting thread to arrive at the fork barrier, with the others waiting.
        private void Fork()
        {
            long start = Stopwatch.GetTimestamp();
            _child = _target.Space.Fork();
            _lastForkSeconds = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }

        // Runs on the last faulting thread to arrive at the round barrier, with the others waiting.
        private void NextRound()
        {
            if (_child is not null)
            {
                using (var view = new FaultlineThreadMemory(_child.AttachCpu()))
                {
                    for (int w = 0; w < _shape.Threads; w++)
                    {
                        ulong slice = _region + (ulong)(w * _slicePages) * WorkloadSizes.Page;
                        _childMismatches += ForkPages.CountWrong(view, slice, _slicePages, WorkloadSizes.Salt(w, _roundNumber), null, null);
                    }
                }
                _child.Dispose();
                _child = null;
            }
            if (_region != 0)
            {
                _target.Unmap(_region, _length);
                _region = 0;
            }
            // A phase runs at least one round, however late a loaded machine brings its threads here: every run
            // reports a fork.
            bool firstRoundOfPhase = !ReferenceEquals(_roundsPhase, _phase);
            _roundsPhase = _phase;
            _stopRound = _phase!.StopRequested && !firstRoundOfPhase;
            if (!_stopRound)
            {
                _region = _target.Map(_length);
                _roundNumber++;
            }
        }
    }
}
