using Faultline.Cli.Paths;
using Faultline.Cli.Replay;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>replay:TRACE</c>: a recorded program (<c>faultline record</c>) as the workload. One operation is one call or one
/// touch; one iteration replays the whole trace from fresh address spaces laid out as the kernel laid them out. The
/// calls run in the recorded order, one at a time, each on the worker of its recorded thread; the touches between two
/// calls (the recorded page faults, or, when the trace has none, one touch per page of each successful anonymous mmap
/// right after it) run concurrently, each recorded thread's on its worker (<see cref="ReplayPlan"/>). Faultline's rows
/// check every call's result against the kernel's and every touch's success (a difference is a mismatch). The kernel
/// row replays the same successful calls through libc in this process at relocated addresses inside a reserved region
/// (<see cref="KernelReplayImage"/>); it skips what a .NET process cannot do: the calls and touches of forked
/// children before their exec (no fork), and mlock, mlockall and mseal (they would lock or seal the benchmark).
/// </summary>
internal sealed class ReplayWorkload : IWorkload
{
    /// <summary>The name's prefix: <c>replay:TRACE</c>.</summary>
    public const string Prefix = "replay:";

    private readonly ReplayPlan _plan;
    private readonly string _file;

    /// <summary>Loads <paramref name="file"/>.</summary>
    /// <exception cref="ArgumentException">The file is missing or not a trace.</exception>
    public ReplayWorkload(string file)
    {
        _file = file;
        try
        {
            _plan = ReplayPlan.Create(TraceFile.Read(file));
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or FormatException)
        {
            throw new ArgumentException($"--workload {Prefix}{file}: {e.Message}", e);
        }
    }

    /// <inheritdoc />
    public string Name => Prefix + Path.GetFileName(_file);

    /// <inheritdoc />
    public string Description => $"replay of {string.Join(' ', _plan.Trace.Command)}: {_plan.CallCount} calls and {_plan.TouchCount} " +
        (_plan.SyntheticTouches ? "touches (one per page of each anonymous mapping: no faults recorded)" : "recorded faults");

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public int DefaultThreads => Math.Clamp(_plan.Threads.Count, 1, 64);

    /// <inheritdoc />
    // Every touched page twice over (a frame may wait for reuse), in each exec's space.
    public long TouchedBytes(RunShape shape) => PhysicalBytes;

    /// <summary>The arena of each replayed address space.</summary>
    public long PhysicalBytes => Math.Max(64L << 20, _plan.TouchCount * 2 * PageGeometry.PageSize + (32L << 20));

    /// <inheritdoc />
    public string? Unavailable(PathKind path) => path is PathKind.Kernel or PathKind.MmapLock or PathKind.Speculative or PathKind.VmaLock
        ? null
        : $"{Name}: replay runs on mmap-lock, speculative, vma-lock and the kernel";

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => target.Path == PathKind.Kernel
        ? new KernelReplayRun(_plan, shape.Workers)
        : new FaultlineReplayRun(_plan, shape.Workers, PathNames.ToFaultPath(target.Path), PhysicalBytes);
}
