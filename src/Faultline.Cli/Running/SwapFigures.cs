using Faultline.Cli.Workloads;

namespace Faultline.Cli.Running;

/// <summary>A swap workload's row: pages in and out per second from its counters, and the area's floor measured after it.</summary>
internal static class SwapFigures
{
    /// <summary>
    /// <paramref name="result"/> with its swap figures: the floor moves as many pages as the run paged out (at least
    /// 4 MiB, at most <paramref name="workingSetBytes"/>), through a fresh area of <paramref name="area"/>.
    /// </summary>
    public static BenchResult Add(BenchResult result, SwapAreaKind area, long workingSetBytes)
    {
        long ins = result.Counters.GetValueOrDefault(VmCounters.SwapIn);
        long outs = result.Counters.GetValueOrDefault(VmCounters.SwapOut);
        long pages = Math.Clamp(outs, 1024, workingSetBytes / (long)PageGeometry.PageSize);
        SwapAreaFloor floor = SwapAreaFloor.Measure(area, pages);
        double swapins = ins / result.Seconds;
        return result with
        {
            SwapArea = SwapWorkload.AreaName(area),
            SwapinsPerSec = Math.Round(swapins, 1),
            SwapoutsPerSec = Math.Round(outs / result.Seconds, 1),
            FloorWritesPerSec = Math.Round(floor.WritesPerSec, 1),
            FloorReadsPerSec = Math.Round(floor.ReadsPerSec, 1),
            FloorRatio = swapins > 0 ? Math.Round(floor.RoundTripsPerSec / swapins, 3) : null,
        };
    }
}
