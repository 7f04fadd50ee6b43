using Faultline.Host;
using System.Diagnostics;
using Faultline.Cli.Paths;
using Faultline.Cli.Workloads;

namespace Faultline.Cli.Running;

/// <summary>
/// Runs one workload on one path: a fresh address space, one thread per worker, a short warm-up phase (it also makes
/// the host back Faultline's arena, so the measured phase does not pay the host's first-touch faults), then the
/// measured phase. Workers finish the iteration in hand when time is up; the phase ends when the last one does.
/// </summary>
internal static class BenchRunner
{
    private static readonly TimeSpan HangAfter = TimeSpan.FromSeconds(120);

    /// <summary>Runs and measures.</summary>
    /// <param name="workload">The workload.</param>
    /// <param name="path">The path.</param>
    /// <param name="shape">Threads and churn threads.</param>
    /// <param name="duration">Measured time.</param>
    /// <param name="progress">Called now and then with the fraction of the run done (0..1).</param>
    public static BenchResult Run(IWorkload workload, PathKind path, RunShape shape, TimeSpan duration, Action<double>? progress = null)
    {
        TimeSpan warmup = TimeSpan.FromTicks(Math.Min(TimeSpan.FromMilliseconds(300).Ticks, duration.Ticks / 4));
        GC.Collect();
        GC.WaitForPendingFinalizers();
        using IMemoryTarget target = workload is SwapWorkload swap && path != PathKind.Kernel
            ? new FaultlineTarget(path, swap.RamBytes, swap.Options())
            : CreateTarget(path, workload.TouchedBytes(shape) + shape.Churn * (1L << 20));
        IWorkloadRun run = workload.Start(target, shape);
        // A run holding host resources of its own (a kernel replay's reserved regions) gives them back with the target.
        using IDisposable? held = run as IDisposable;
        int workers = shape.Workers;
        using var gate = new Barrier(workers + 1);
        var phases = new Phase[2];
        phases[0] = new Phase(workers);
        phases[1] = new Phase(workers);

        var threads = new Thread[workers];
        for (int i = 0; i < workers; i++)
        {
            int worker = i;
            threads[i] = new Thread(() => Worker(worker, target, run, gate, phases)) { IsBackground = true, Name = $"{workload.Name}#{worker}" };
            threads[i].Start();
        }

        double total = (warmup + duration).TotalSeconds;
        RunPhase(gate, phases[0], warmup, f => progress?.Invoke(f * warmup.TotalSeconds / total));
        IReadOnlyDictionary<string, long> before = target.SnapshotCounters();
        Rusage processBefore = LibC.Usage(LibC.RUSAGE_SELF);
        TimeSpan elapsed = RunPhase(gate, phases[1], duration, f => progress?.Invoke((warmup.TotalSeconds + f * duration.TotalSeconds) / total));
        Rusage processAfter = LibC.Usage(LibC.RUSAGE_SELF);
        IReadOnlyDictionary<string, long> after = target.SnapshotCounters();
        foreach (Thread t in threads)
        {
            t.Join();
        }
        progress?.Invoke(1);
        BenchResult result = Summarize(workload, path, shape, elapsed, phases, before, after, processAfter.MinorFaults - processBefore.MinorFaults);
        return workload.SwapArea is { } area ? SwapFigures.Add(result, area, workload.TouchedBytes(shape)) : result;
    }

    /// <summary>A Faultline address space sized for <paramref name="touchedBytes"/>, or the host kernel.</summary>
    public static IMemoryTarget CreateTarget(PathKind path, long touchedBytes)
    {
        if (path == PathKind.Kernel)
        {
            return new KernelTarget();
        }
        // Data frames, page tables (one 4 KiB table per 2 MiB, plus upper levels), per-Cpu frame caches, slack.
        long physical = touchedBytes + touchedBytes / 256 + (64L << 20);
        return new FaultlineTarget(path, physical);
    }

    private static TimeSpan RunPhase(Barrier gate, Phase phase, TimeSpan duration, Action<double> progress)
    {
        gate.SignalAndWait();
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < duration)
        {
            TimeSpan left = duration - clock.Elapsed;
            Thread.Sleep(left < TimeSpan.FromMilliseconds(100) ? left : TimeSpan.FromMilliseconds(100));
            progress(Math.Min(1, clock.Elapsed / duration));
        }
        phase.Control.RequestStop();
        if (!gate.SignalAndWait(HangAfter))
        {
            // Exit rather than unwind: disposing the address space under running workers would be a use after free.
            Console.Error.WriteLine($"faultline: workers did not finish within {HangAfter.TotalSeconds:0} s of the end of the phase (deadlock or livelock)");
            Environment.Exit(3);
        }
        return clock.Elapsed;
    }

    private static void Worker(int worker, IMemoryTarget target, IWorkloadRun run, Barrier gate, Phase[] phases)
    {
        ThreadMemory? memory = null;
        try
        {
            memory = target.AttachThread();
        }
        catch (Exception e)
        {
            phases[0].Stats[worker].Fail($"attach: {e.Message}");
        }
        foreach (Phase phase in phases)
        {
            gate.SignalAndWait();
            WorkerStats stats = phase.Stats[worker];
            Rusage before = LibC.Usage(LibC.RUSAGE_THREAD);
            try
            {
                if (memory is not null)
                {
                    run.Run(worker, memory, phase.Control, stats);
                }
            }
            catch (Exception e)
            {
                stats.Fail($"{e.GetType().Name}: {e.Message}");
            }
            Rusage after = LibC.Usage(LibC.RUSAGE_THREAD);
            stats.CpuSeconds = after.CpuSeconds - before.CpuSeconds;
            stats.HostMinorFaults = after.MinorFaults - before.MinorFaults;
            if (!gate.SignalAndWait(HangAfter))
            {
                break;
            }
        }
        memory?.Dispose();
    }

    private static BenchResult Summarize(IWorkload workload, PathKind path, RunShape shape, TimeSpan elapsed, Phase[] phases,
        IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after, long hostMinorFaults)
    {
        WorkerStats[] warm = phases[0].Stats;
        WorkerStats[] measured = phases[1].Stats;
        WorkerStats[] faulting = measured[..shape.Threads];
        WorkerStats[] churn = measured[shape.Threads..];
        double seconds = elapsed.TotalSeconds;
        long ops = faulting.Sum(s => s.Ops);
        long faults = workload.FaultCounter is { } faultCounter
            ? after.GetValueOrDefault(faultCounter) - before.GetValueOrDefault(faultCounter)
            : faulting.Sum(s => s.Faults);
        // A workload that times its fault loops leaves its set-up (populating, forking) out of both figures; its rate
        // is per second of the threads' mean time in those loops.
        bool timed = workload.TimesItsFaults;
        double cpu = faulting.Sum(s => timed ? s.FaultCpuSeconds : s.CpuSeconds);
        double faultSeconds = timed ? faulting.Sum(s => s.FaultSeconds) / shape.Threads : seconds;
        ForkStats[] forks = measured.Select(s => s.Fork).ToArray();
        long forkCount = forks.Sum(f => f.Forks);
        long parentFaults = forks.Sum(f => f.ParentFaults);
        var counters = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach ((string name, long value) in after)
        {
            counters[name] = value - before.GetValueOrDefault(name);
        }
        foreach ((string name, long value) in forks.SelectMany(f => f.ChildCounters))
        {
            counters["child." + name] = counters.GetValueOrDefault("child." + name) + value;
        }
        return new BenchResult
        {
            Workload = workload.Name,
            Path = PathNames.Name(path),
            Threads = shape.Threads,
            Churn = shape.Churn,
            Seconds = Math.Round(seconds, 4),
            Ops = ops,
            OpsPerSec = Math.Round(ops / seconds, 1),
            Faults = faults,
            FaultsPerSec = faultSeconds > 0 ? Math.Round(faults / faultSeconds, 1) : 0,
            BytesPerSec = workload.ReportsBytes && faultSeconds > 0 ? Math.Round(faults * (double)PageGeometry.PageSize / faultSeconds) : null,
            NsPerFault = faults == 0 ? 0 : Math.Round(cpu * 1e9 / faults, 1),
            ChurnOpsPerSec = Math.Round(churn.Sum(s => s.ChurnOps) / seconds, 1),
            ForkMs = forkCount == 0 ? null : Math.Round(forks.Sum(f => f.ForkSeconds) * 1e3 / forkCount, 3),
            Forks = forkCount == 0 ? null : forkCount,
            ParentFaults = parentFaults == 0 ? null : parentFaults,
            ParentNsPerFault = parentFaults == 0 ? null : Math.Round(forks.Sum(f => f.ParentCpuSeconds) * 1e9 / parentFaults, 1),
            ParentCopies = parentFaults == 0 || forks.Any(f => f.ParentCopies < 0) ? null : forks.Sum(f => f.ParentCopies),
            Counters = counters,
            CpuSeconds = Math.Round(cpu, 4),
            HostMinorFaults = hostMinorFaults,
            Mismatches = warm.Concat(measured).Sum(s => s.Mismatches),
            Error = warm.Concat(measured).Select(s => s.Error).FirstOrDefault(e => e is not null),
        };
    }

    private sealed class Phase(int workers)
    {
        public PhaseControl Control { get; } = new();
        public WorkerStats[] Stats { get; } = Enumerable.Range(0, workers).Select(_ => new WorkerStats()).ToArray();
    }
}
