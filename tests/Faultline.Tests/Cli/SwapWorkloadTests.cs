using System.Globalization;
using System.Text.Json;
using Faultline.Cli.Paths;
using Faultline.Cli.Reporting;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The swap workload run tiny (8 MiB over 4 MiB of guest RAM) through the bench runner on both areas: every row
/// verifies its stamps, really swaps, and renders the JSON fields its readers use (<c>faults_per_sec</c>,
/// <c>swapins_per_sec</c>, <c>swapouts_per_sec</c>, the floor, <c>verified</c>).
/// </summary>
public sealed class SwapWorkloadTests
{
    private const long WorkingSet = 8L << 20;

    [Theory]
    [InlineData(SwapAreaKind.Compressed, false, "mmap-lock", 0)]
    [InlineData(SwapAreaKind.Compressed, true, "vma-lock", 1)]
    [InlineData(SwapAreaKind.File, false, "speculative", 1)]
    [InlineData(SwapAreaKind.File, true, "mmap-lock", 0)]
    public void ATinyRunSwapsVerifiesAndRendersItsFields(SwapAreaKind area, bool random, string pathName, int churn)
    {
        var workload = new SwapWorkload(area, random, WorkingSet);
        PathKind path = PathNames.ParseList(pathName).Single();

        BenchResult result = BenchRunner.Run(workload, path, new RunShape(1, churn), TimeSpan.FromMilliseconds(40));
        BenchReport report = BenchReport.Create(MachineInfo.Collect(), "test", 1, 0.04, [result], []);

        using JsonDocument json = JsonDocument.Parse(JsonReport.Render(report));
        JsonElement row = json.RootElement.GetProperty("results").EnumerateArray().Single();
        Assert.True(row.GetProperty("verified").GetBoolean(), row.TryGetProperty("error", out JsonElement e) ? e.GetString() : null);
        Assert.Equal(SwapWorkload.AreaName(area), row.GetProperty("swap_area").GetString());
        foreach (string field in new[] { "faults_per_sec", "swapins_per_sec", "swapouts_per_sec", "floor_writes_per_sec", "floor_reads_per_sec", "floor_ratio" })
        {
            Assert.True(row.GetProperty(field).GetDouble() > 0, $"{field} is not positive");
        }
        // The working set is twice the RAM: a pass cannot finish without paging out and reading back.
        Assert.True(row.GetProperty("counters").GetProperty(VmCounters.SwapIn).GetInt64() > 0);
        Assert.Equal(churn > 0, row.GetProperty("churn_ops_per_sec").GetDouble() > 0);
    }

    [Fact]
    public void AStampChangedBehindThePassFailsIt()
    {
        var workload = new SwapWorkload(SwapAreaKind.Compressed, random: false, WorkingSet);
        using var target = new FaultlineTarget(PathKind.MmapLock, workload.RamBytes, workload.Options());
        using ThreadMemory memory = target.AttachThread();
        IWorkloadRun run = workload.Start(target, new RunShape(1, 0));
        var phase = new PhaseControl();
        phase.RequestStop();
        var first = new WorkerStats();
        run.Run(0, memory, phase, first);
        Assert.Null(first.Error);

        // The region is the only mapping; overwrite one page's stamp as a lost or misplaced swap-in would.
        ulong page = ulong.Parse(target.Space.GetMaps().Split('-')[0], NumberStyles.HexNumber) + 5 * 4096;
        memory.StoreLong(page, 42);
        var second = new WorkerStats();
        run.Run(0, memory, phase, second);

        Assert.Equal(1, second.Mismatches);
        Assert.Contains($"first at 0x{page:x}", second.Error);
    }

    [Fact]
    public void SwapNamesEveryVariantAndEachHasItsOwnName()
    {
        IReadOnlyList<IWorkload> all = WorkloadCatalog.ParseList("swap");
        Assert.Equal(["swap-compressed-seq", "swap-compressed-random", "swap-file-seq", "swap-file-random"], all.Select(w => w.Name));
        Assert.Same(all[3], WorkloadCatalog.ParseList("swap-file-random").Single());
        Assert.Equal(SwapAreaKind.File, all[2].SwapArea);
    }

    [Fact]
    public void TheKernelRowSaysWhyItIsNotRun()
    {
        string? why = new SwapWorkload(SwapAreaKind.Compressed, random: false).Unavailable(PathKind.Kernel);
        Assert.NotNull(why);
        Assert.StartsWith("kernel swap reference not run: ", why);
        Assert.Null(new SwapWorkload(SwapAreaKind.Compressed, random: false).Unavailable(PathKind.VmaLock));
    }
}
