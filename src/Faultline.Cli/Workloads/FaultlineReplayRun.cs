using Faultline.Cli.Replay;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// A <see cref="ReplayWorkload"/> iteration on Faultline: fresh address spaces per exec (<see cref="ReplayProcesses"/>),
/// every call replayed and compared with the kernel's result (<see cref="CallReplay"/>; a difference is a mismatch),
/// every touch an access of the recorded thread's Cpu, which must succeed.
/// </summary>
internal sealed class FaultlineReplayRun : ReplayRun
{
    private readonly ReplayPlan _plan;
    private readonly FaultPath _path;
    private readonly long _physicalBytes;
    // Each worker's Cpus by space and recorded thread: only that worker uses them.
    private readonly Dictionary<(ReplaySpace, int), Cpu>[] _cpus;
    private ReplayProcesses? _processes;

    /// <summary>A run of <paramref name="plan"/> on <paramref name="path"/> with <paramref name="workers"/> workers.</summary>
    public FaultlineReplayRun(ReplayPlan plan, int workers, FaultPath path, long physicalBytes) : base(plan, workers)
    {
        _plan = plan;
        _path = path;
        _physicalBytes = physicalBytes;
        _cpus = Enumerable.Range(0, workers).Select(_ => new Dictionary<(ReplaySpace, int), Cpu>()).ToArray();
    }

    /// <inheritdoc />
    protected override void BeginIteration() => _processes = new ReplayProcesses(_plan.Trace, _path, _physicalBytes);

    /// <inheritdoc />
    protected override void EndIteration()
    {
        _processes?.Dispose();
        _processes = null;
    }

    /// <inheritdoc />
    protected override bool Call(TraceCall call, WorkerStats stats)
    {
        if (ReplayProcesses.IsProcessCall(call.Name))
        {
            _processes!.Apply(call);
            return true;
        }
        if (_processes!.SpaceOf(call.Tid) is not { } space)
        {
            return false;
        }
        CallOutcome outcome = CallReplay.Execute(space.Space, call, _plan.Trace.FileSystems);
        if (outcome.Kind == OutcomeKind.Different)
        {
            stats.Fail($"replay: {call.Text}: faultline {outcome.Faultline}");
        }
        return outcome.Kind != OutcomeKind.Unmodelled;
    }

    /// <inheritdoc />
    protected override bool Touch(TraceFault touch, int worker, WorkerStats stats)
    {
        if (_processes!.SpaceOf(touch.Tid) is not { } space)
        {
            return false;
        }
        if (!_cpus[worker].TryGetValue((space, touch.Tid), out Cpu? cpu))
        {
            cpu = space.Space.AttachCpu();
            _cpus[worker][(space, touch.Tid)] = cpu;
        }
        AccessOutcome result = touch.Access == AccessKind.Write ? cpu.TryStore(touch.Address, (byte)0) : cpu.TryLoad(touch.Address, out byte _);
        if (result != AccessOutcome.Ok)
        {
            stats.Fail($"replay: [{touch.Tid}] {touch.Access} at 0x{touch.Address:x}: {result}");
        }
        return true;
    }

    /// <inheritdoc />
    protected override void ReleaseWorker(int worker)
    {
        foreach (Cpu cpu in _cpus[worker].Values)
        {
            cpu.Dispose();
        }
        _cpus[worker].Clear();
    }
}
