using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit;

namespace Faultline.Tests.Stress;

/// <summary>
/// Bounded stress of a memory limit with swap: a group limited to a quarter of its working set (RAM is plentiful, so
/// all reclaim is the group's own), several Cpu threads writing stamped pages and checking every stamp they read back.
/// At the end every page holds its last stamp, the usage never passed the limit and goes back to zero with the
/// mapping, no access failed, and no freed frame was written through a stale translation (poisoning).
/// </summary>
public sealed class MemoryGroupStressTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const int Workers = 3;
    private const int PagesPerWorker = 256;
    private const int LimitPages = Workers * PagesPerWorker / 4;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(1.5);

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static long Stamp(ulong address, int generation) => (long)(address * 0x9E3779B97F4A7C15UL) ^ generation;

    [Theory]
    [MemberData(nameof(Paths))]
    public void StampedPagesSurviveAGroupLimitedToAQuarterOfItsWorkingSet(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 32L << 20,
            PoisonFreedFrames = true,
            MemoryLimitBytes = LimitPages * (long)Page,
            Swap = new SwapOptions { SizeBytes = 32L << 20, BackgroundReclaim = false },
        });
        MemoryGroup group = space.MemoryGroup!;
        ulong region = space.Map(Base, Workers * PagesPerWorker * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        var failures = new ConcurrentQueue<string>();
        var generations = new int[Workers][];
        var threads = new List<Thread>();
        var clock = Stopwatch.StartNew();
        for (int w = 0; w < Workers; w++)
        {
            int worker = w;
            generations[w] = new int[PagesPerWorker];
            threads.Add(new Thread(() => Work(space, region + (ulong)worker * PagesPerWorker * Page, generations[worker], worker, clock, failures)));
        }
        foreach (Thread thread in threads)
        {
            thread.Start();
        }
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(60)), "a worker hung");
        }
        Assert.Empty(failures);

        using (Cpu cpu = space.AttachCpu())
        {
            for (int w = 0; w < Workers; w++)
            {
                for (int i = 0; i < PagesPerWorker; i++)
                {
                    ulong page = region + (ulong)(w * PagesPerWorker + i) * Page;
                    Assert.Equal(Stamp(page, generations[w][i]), cpu.Load<long>(page));
                }
            }
        }
        Assert.True(group.PeakBytes <= LimitPages * (long)Page, $"peak {group.PeakBytes}");
        Assert.Equal(0, group.OomKillEvents);
        Assert.True(group.ReadStat()["pswpout"] > 0);
        Assert.Equal(0, space.PoisonViolations);
        space.Unmap(region, Workers * PagesPerWorker * Page);
        Assert.Equal(0, group.UsageBytes);
    }

    // Several passes over the worker's pages: read and check the last stamp, write the next.
    private static void Work(AddressSpace space, ulong start, int[] generation, int worker, Stopwatch clock, ConcurrentQueue<string> failures)
    {
        try
        {
            using Cpu cpu = space.AttachCpu();
            var random = new Random(worker);
            for (int pass = 1; pass <= 2 || clock.Elapsed < Duration; pass++)
            {
                for (int n = 0; n < PagesPerWorker; n++)
                {
                    int i = pass == 1 ? n : random.Next(PagesPerWorker);
                    ulong page = start + (ulong)i * Page;
                    long seen = cpu.Load<long>(page);
                    long expected = generation[i] == 0 ? 0 : Stamp(page, generation[i]);
                    if (seen != expected)
                    {
                        failures.Enqueue($"worker {worker} page {i}: read {seen:x}, expected {expected:x}");
                        return;
                    }
                    generation[i] = pass * PagesPerWorker + n + 1;
                    cpu.Store(page, Stamp(page, generation[i]));
                }
            }
        }
        catch (Exception e)
        {
            failures.Enqueue($"worker {worker}: {e}");
        }
    }
}
