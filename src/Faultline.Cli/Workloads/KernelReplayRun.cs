using Faultline.Cli.Replay;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// A <see cref="ReplayWorkload"/> iteration on the host kernel: each exec's image is a <see cref="KernelReplayImage"/>
/// (reserved once, emptied at its exec), threads and vforks share their parent's, forked children before their exec
/// are not replayed (a .NET process cannot fork); calls go through libc at relocated addresses, touches are real
/// loads and stores.
/// </summary>
internal sealed class KernelReplayRun : ReplayRun, IDisposable
{
    private readonly ReplayPlan _plan;
    private readonly Dictionary<int, KernelReplayImage> _images = [];
    private readonly Dictionary<int, KernelReplayImage?> _threads = [];

    /// <summary>A run of <paramref name="plan"/> with <paramref name="workers"/> workers; reserves a region per exec.</summary>
    public KernelReplayRun(ReplayPlan plan, int workers) : base(plan, workers)
    {
        _plan = plan;
        HashSet<ulong> windows = Windows(plan);
        foreach (ProcessLayout layout in plan.Trace.Layouts)
        {
            _images[layout.ExecSeq] = new KernelReplayImage(windows, layout);
        }
    }

    /// <inheritdoc />
    protected override void BeginIteration() => _threads.Clear();

    /// <inheritdoc />
    protected override void EndIteration()
    {
    }

    /// <inheritdoc />
    protected override bool Call(TraceCall call, WorkerStats stats)
    {
        switch (call.Name)
        {
            case "execve" or "execveat":
                if (call.Errno is null && call.Result == "0" && _images.TryGetValue(call.Seq, out KernelReplayImage? image))
                {
                    image.Reset();
                    _threads[call.Tid] = image;
                    return true;
                }
                return false;
            case "clone" or "clone3" or "fork" or "vfork":
                if (call.Errno is null && int.TryParse(call.Result, out int child) && child > 0)
                {
                    // CLONE_VM shares the image; a fork's copy cannot be made in this process, so the child is not replayed.
                    bool sharesMemory = call.Name == "vfork" || call.Args.Any(a => a.Contains("CLONE_VM", StringComparison.Ordinal));
                    _threads[child] = sharesMemory ? _threads.GetValueOrDefault(call.Tid) : null;
                    return true;
                }
                return false;
        }
        return _threads.GetValueOrDefault(call.Tid) is { } current && current.Execute(call);
    }

    /// <inheritdoc />
    protected override bool Touch(TraceFault touch, int worker, WorkerStats stats) =>
        _threads.GetValueOrDefault(touch.Tid) is { } image && image.Touch(touch);

    /// <summary>Releases the reserved regions (after the run's last phase).</summary>
    public void Dispose()
    {
        foreach (KernelReplayImage image in _images.Values)
        {
            image.Dispose();
        }
        _images.Clear();
    }

    // Every 1 GiB window any recorded address of the trace falls in: initial mappings, call ranges and results, faults.
    private static HashSet<ulong> Windows(ReplayPlan plan)
    {
        var windows = new HashSet<ulong>();
        void Add(ulong start, ulong length) => windows.UnionWith(KernelReplayImage.Windows(start, Math.Max(length, 1)));
        foreach (ProcessLayout layout in plan.Trace.Layouts)
        {
            foreach (InitialMapping m in layout.Mappings)
            {
                Add(m.Start, m.End - m.Start);
            }
            Add(layout.StartBrk, 1);
        }
        foreach (TraceCall call in plan.Trace.Calls)
        {
            ulong[] a;
            ulong result;
            try
            {
                a = call.Args.Select(x => ReplayProcesses.IsProcessCall(call.Name) ? 0 : ArgumentText.Value(x)).ToArray();
                result = call.ResultUnknown ? 0 : ArgumentText.Value(call.Result);
            }
            catch (FormatException)
            {
                continue;
            }
            switch (call.Name)
            {
                case "mmap":
                    Add(result, a.Length > 1 ? a[1] : 0);
                    break;
                case "mremap":
                    Add(a[0], a[1]);
                    Add(result, a.Length > 2 ? a[2] : 0);
                    break;
                case "brk":
                    Add(result, 1);
                    break;
                case "munmap" or "mprotect" or "pkey_mprotect" or "madvise" or "mincore" or "msync":
                    Add(a[0], a[1]);
                    break;
            }
        }
        foreach (ReplaySegment segment in plan.Segments)
        {
            foreach (TraceFault touch in segment.Touches)
            {
                Add(touch.Address, 1);
            }
        }
        return windows;
    }
}
