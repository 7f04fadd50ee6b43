using System.Diagnostics;
using Faultline.Cli.Paths;

namespace Faultline.Cli.Stress;

/// <summary>The outcome of a stress run on one path.</summary>
internal sealed record StressResult(string Path, double Seconds, long Iterations, long Checks, long Mismatches,
    IReadOnlyList<string> Errors, IReadOnlyDictionary<string, long> Counters);

/// <summary>
/// One bounded soak on one fault path: faulting workers and churn workers on one address space for a fixed time,
/// then the end-state checks (nothing resident, no VMA, no frame leaked once every Cpu detached).
/// </summary>
internal static class StressRun
{
    private const ulong Page = 4096;
    private const ulong StripePages = 256;
    private const ulong ZonePages = 256;

    /// <summary>Runs the soak.</summary>
    public static StressResult Run(PathKind path, int faulters, int churners, TimeSpan duration)
    {
        int workers = faulters + churners;
        long arena = faulters * (long)(512 + StripePages) * (long)Page * 2 + (256L << 20);
        using var target = (FaultlineTarget)Running.BenchRunner.CreateTarget(path, arena);
        AddressSpace space = target.Space;
        ulong stripeLength = StripePages * Page;
        ulong zoneLength = ZonePages * Page;
        ulong regionLength = (ulong)faulters * stripeLength + zoneLength;
        ulong region = space.Map(0, regionLength, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        ulong zone = region + (ulong)faulters * stripeLength;

        var stats = Enumerable.Range(0, workers).Select(_ => new StressStats()).ToArray();
        var clock = Stopwatch.StartNew();
        bool Stop() => clock.Elapsed >= duration;
        var threads = new Thread[workers];
        for (int i = 0; i < workers; i++)
        {
            int w = i;
            threads[i] = new Thread(() =>
            {
                using Cpu cpu = space.AttachCpu();
                try
                {
                    if (w < faulters)
                    {
                        StressWorkers.Faulter(w, space, cpu, region + (ulong)w * stripeLength, stripeLength, Stop, stats[w]);
                    }
                    else
                    {
                        StressWorkers.Churner(w, space, cpu, zone, zoneLength, Stop, stats[w]);
                    }
                }
                catch (Exception e)
                {
                    stats[w].Check(false, () => $"worker {w}: {e.GetType().Name}: {e.Message}");
                }
            }) { IsBackground = true, Name = $"stress#{w}" };
            threads[i].Start();
        }
        foreach (Thread t in threads)
        {
            if (!t.Join(duration + TimeSpan.FromSeconds(120)))
            {
                Console.Error.WriteLine($"faultline stress: worker {t.Name} did not finish (deadlock or livelock) on {PathNames.Name(path)}");
                Environment.Exit(3);
            }
        }
        double seconds = clock.Elapsed.TotalSeconds;

        // End state: with the shared region gone and every Cpu detached, nothing may remain.
        var end = new StressStats();
        space.Unmap(region, regionLength);
        end.Check(space.MapCount == 0, () => $"{space.MapCount} VMAs left after everything was unmapped");
        end.Check(space.ResidentPages == 0, () => $"{space.ResidentPages} anonymous pages resident after everything was unmapped");
        end.Check(space.CpuCount == 0, () => $"{space.CpuCount} Cpus still attached");
        int leaked = space.FramesInUse - space.PageTablePages;
        end.Check(leaked == 0, () => $"{leaked} frames in use beyond the {space.PageTablePages} page-table pages (leak)");

        StressStats[] all = [.. stats, end];
        return new StressResult(PathNames.Name(path), seconds,
            stats.Sum(s => s.Iterations), all.Sum(s => s.Checks), all.Sum(s => s.Mismatches),
            all.SelectMany(s => s.Errors).Take(10).ToList(), space.GetCounters());
    }
}
