namespace Faultline.Cli.Workloads;

/// <summary>The workloads by name.</summary>
internal static class WorkloadCatalog
{
    /// <summary>Every workload, in report order.</summary>
    public static readonly IWorkload[] All =
    [
        new PageFault1Workload(),
        new MixedWorkload(),
        new PftWorkload(),
        new Mmap1Workload(),
        new EbizzyWorkload(),
        new ForkWorkload(),
        new ForkChurnWorkload(),
        new MallocWorkload(),
        new UserfaultWorkload(),
        FileFaultWorkload.PrivateWrite,
        FileFaultWorkload.SharedWrite,
        FileFaultWorkload.CachedRead,
        new ThpWorkload(),
        .. SwapWorkload.Variants,
    ];

    /// <summary>Parses a comma list of names, <c>swap</c> (its four variants), <c>replay:TRACE</c> (a recorded program) or <c>all</c>.</summary>
    public static IReadOnlyList<IWorkload> ParseList(string text)
    {
        var result = new List<IWorkload>();
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (item.Equals("all", StringComparison.OrdinalIgnoreCase))
            {
                result.AddRange(All);
                continue;
            }
            if (item.Equals(SwapWorkload.GroupName, StringComparison.OrdinalIgnoreCase))
            {
                result.AddRange(SwapWorkload.Variants);
                continue;
            }
            if (item.StartsWith(ReplayWorkload.Prefix, StringComparison.Ordinal))
            {
                result.Add(new ReplayWorkload(item[ReplayWorkload.Prefix.Length..]));
                continue;
            }
            result.Add(All.FirstOrDefault(w => w.Name.Equals(item, StringComparison.OrdinalIgnoreCase))
                ?? throw new ArgumentException($"unknown workload '{item}' (expected {string.Join(", ", All.Select(w => w.Name))}, {SwapWorkload.GroupName} (every swap variant), {ReplayWorkload.Prefix}TRACE or all)"));
        }
        return result.Distinct().ToList();
    }
}
