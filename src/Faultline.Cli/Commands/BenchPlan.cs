using Faultline.Cli.Paths;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;

namespace Faultline.Cli.Commands;

/// <summary>One configuration to measure on every selected path.</summary>
internal sealed record BenchConfig(IWorkload Workload, RunShape Shape);

/// <summary>What a <c>bench</c> invocation measures.</summary>
internal static class BenchPlan
{
    /// <summary>
    /// Measured seconds per run when <c>--seconds</c> is not given: with <see cref="DefaultRepeats"/> repeats the
    /// default suite takes about as long as one 1.5 s run per case did.
    /// </summary>
    public const double DefaultSeconds = 0.3;

    /// <summary>Repeats of every case when <c>--repeat</c> is not given.</summary>
    public const int DefaultRepeats = 3;

    /// <summary>Measured seconds of each run of the shared warm-up pass before the first repeat (not reported).</summary>
    public const double WarmUpSeconds = 0.05;

    /// <summary>
    /// The shared warm-up pass: the first case of every (workload, path) pair. The code a run exercises depends on
    /// those two only, not on the thread counts, so one run each warms it all.
    /// </summary>
    public static IReadOnlyList<BenchCase> WarmUpCases(IReadOnlyList<BenchCase> cases) =>
        cases.DistinctBy(c => (c.Config.Workload.Name, c.Path)).ToList();

    /// <summary>
    /// The default suite: single- and two-thread page_fault1, the contended case mixed 1+1 and its baseline 1+0 (for
    /// the with ÷ without churn ratio), pft and ebizzy at 2 threads, mmap1 at 1. Not fork: the kernel's reference
    /// spends seconds per iteration populating and copying 256 MiB, which would lengthen the suite by a third.
    /// </summary>
    public static IReadOnlyList<BenchConfig> Suite() =>
    [
        new(Find("page_fault1"), new RunShape(1, 0)),
        new(Find("page_fault1"), new RunShape(2, 0)),
        new(Find("mixed"), new RunShape(1, 0)),
        new(Find("mixed"), new RunShape(1, 1)),
        new(Find("pft"), new RunShape(2, 0)),
        new(Find("mmap1"), new RunShape(1, 0)),
        new(Find("ebizzy"), new RunShape(2, 0)),
    ];

    /// <summary>Largest <c>--fork-mib</c>: the fork workloads hold the region twice (before and after the copies).</summary>
    public const int MaxForkMib = 16384;

    /// <summary>
    /// The configurations for explicit options: every workload (default all; fork, fork-churn, userfault, thp and swap only when named,
    /// or with <c>all</c>) × every thread count (default 1, malloc 2; <c>fork</c> always runs one) ×, for the
    /// workloads with churn threads (mixed, fork-churn, malloc), every churn count (default 1, malloc 2). With none of
    /// the three options, the suite. <paramref name="forkMib"/> sizes the fork workloads' region.
    /// </summary>
    /// <exception cref="ArgumentException">An unknown name, a bad number.</exception>
    public static IReadOnlyList<BenchConfig> Build(string? workloads, string? threads, string? churn,
        int forkMib = WorkloadSizes.ForkRegionMib)
    {
        if (forkMib is < 1 or > MaxForkMib)
        {
            throw new ArgumentException($"--fork-mib: must be in [1, {MaxForkMib}]");
        }
        if (workloads is null && threads is null && churn is null)
        {
            return Suite();
        }
        IReadOnlyList<IWorkload> chosen = workloads is null
            ? WorkloadCatalog.All.Where(w => w is not (ForkWorkload or ForkChurnWorkload or UserfaultWorkload or ThpWorkload or SwapWorkload)).ToList()
            : WorkloadCatalog.ParseList(workloads);
        IReadOnlyList<int>? threadCounts = threads is null ? null : ListOption.Integers(threads, "--threads", 1);
        IReadOnlyList<int>? churnCounts = churn is null ? null : ListOption.Integers(churn, "--churn", 0);
        var configs = new List<BenchConfig>();
        foreach (IWorkload named in chosen)
        {
            IWorkload w = named switch
            {
                ForkWorkload => new ForkWorkload(forkMib),
                ForkChurnWorkload => new ForkChurnWorkload(forkMib),
                _ => named,
            };
            foreach (int t in w.SingleThreaded ? [1] : threadCounts ?? [w.DefaultThreads])
            {
                foreach (int c in w.UsesChurn ? churnCounts ?? [w.DefaultChurn] : [0])
                {
                    configs.Add(new BenchConfig(w, new RunShape(t, c)));
                }
            }
        }
        return configs;
    }

    /// <summary>
    /// Every configuration on every path, without the pairs a workload cannot run (the kernel row of fork-churn, of
    /// fork and malloc where no C compiler is found); each of those says why in one line.
    /// </summary>
    public static (IReadOnlyList<BenchCase> Cases, IReadOnlyList<string> Skipped) Cases(IReadOnlyList<BenchConfig> configs,
        IReadOnlyList<PathKind> paths)
    {
        var cases = new List<BenchCase>();
        var skipped = new List<string>();
        foreach (BenchConfig config in configs)
        {
            foreach (PathKind path in paths)
            {
                if (config.Workload.Unavailable(path) is { } why)
                {
                    skipped.Add(why);
                }
                else
                {
                    cases.Add(new BenchCase(config, path));
                }
            }
        }
        return (cases, skipped.Distinct().ToList());
    }

    /// <summary>Paths from <c>--path</c> (default all).</summary>
    public static IReadOnlyList<PathKind> Paths(string? text) => PathNames.ParseList(text ?? "all");

    private static IWorkload Find(string name) => WorkloadCatalog.All.First(w => w.Name == name);
}
