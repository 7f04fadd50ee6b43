using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit;

namespace Faultline.Tests.Stress;

/// <summary>
/// Bounded stress of swap under memory pressure: a working set twice the guest RAM, Cpu threads writing stamped pages
/// and checking every stamp they read, while another thread maps, writes and unmaps beside them. Direct reclaim and the
/// background reclaimer both run; in the fork variant a thread also forks the address space and disposes the child
/// over and over (swap entries and copy-on-write pages shared, then released). At the end every page of every worker
/// holds its last stamp and no freed frame was written through a stale translation (poisoning).
/// </summary>
public sealed class SwapStressTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const int Workers = 2;
    private const int RamPages = 2048;                 // 8 MiB of guest RAM
    private const int PagesPerWorker = RamPages;       // the two workers together touch twice the RAM
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(1.5);

    public static TheoryData<FaultPath, bool> Paths => new()
    {
        { FaultPath.MmapLock, false }, { FaultPath.Speculative, false }, { FaultPath.VmaLock, false },
        { FaultPath.MmapLock, true }, { FaultPath.Speculative, true }, { FaultPath.VmaLock, true },
    };

    private static long Stamp(ulong address, int generation) => (long)(address * 0x9E3779B97F4A7C15UL) ^ generation;

    [Theory]
    [MemberData(nameof(Paths))]
    public void StampedPagesSurviveAWorkingSetTwiceTheRamBesideMapAndUnmap(FaultPath path, bool fork)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = RamPages * (long)Page,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { SizeBytes = 64L << 20 },
        });
        ulong region = space.Map(Base, Workers * PagesPerWorker * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        var failures = new ConcurrentQueue<string>();
        var stop = new ManualResetEventSlim(false);
        var threads = new List<Thread>();
        var generations = new int[Workers][];
        for (int w = 0; w < Workers; w++)
        {
            int worker = w;
            generations[w] = new int[PagesPerWorker];
            threads.Add(new Thread(() => Work(space, region + (ulong)worker * PagesPerWorker * Page, generations[worker], worker, stop, failures)));
        }
        long rounds = 0;
        threads.Add(new Thread(() => MapWriteUnmap(space, stop, failures, ref rounds)));
        long forks = 0;
        if (fork)
        {
            threads.Add(new Thread(() => ForkAndDispose(space, stop, failures, ref forks)));
        }
        foreach (Thread thread in threads)
        {
            thread.Start();
        }
        Thread.Sleep(Duration);
        stop.Set();
        foreach (Thread thread in threads)
        {
            Assert.True(thread.Join(TimeSpan.FromSeconds(60)), "a thread did not finish");
        }
        Assert.Empty(failures);

        using (Cpu cpu = space.AttachCpu())
        {
            for (int w = 0; w < Workers; w++)
            {
                ulong start = region + (ulong)w * PagesPerWorker * Page;
                for (int i = 0; i < PagesPerWorker; i++)
                {
                    ulong page = start + (ulong)i * Page;
                    Assert.Equal(Stamp(page, generations[w][i]), cpu.Load<long>(page));
                    Assert.Equal(~Stamp(page, generations[w][i]), cpu.Load<long>(page + Page - 8));
                }
            }
        }
        Assert.Equal(0, space.PoisonViolations);
        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        Assert.True(counters[VmCounters.SwapOut] > 0, "nothing was swapped out");
        Assert.True(counters[VmCounters.SwapIn] > 0, "nothing was swapped in");

        Assert.True(rounds > 0, "no map-write-unmap round ran");
        Assert.True(!fork || forks > 0, "no fork ran");
        Assert.Equal(0, counters[VmCounters.OutOfMemory]);
        space.Unmap(region, Workers * PagesPerWorker * Page);
    }

    // A worker: first touches every page of its slice, then picks pages at random, checking the stamp it last wrote
    // and writing the next one, on both ends of the page.
    private static void Work(AddressSpace space, ulong start, int[] generation, int seed, ManualResetEventSlim stop,
        ConcurrentQueue<string> failures)
    {
        try
        {
            using Cpu cpu = space.AttachCpu();
            var random = new Random(seed);
            for (int i = 0; i < generation.Length; i++)
            {
                ulong page = start + (ulong)i * Page;
                cpu.Store(page, Stamp(page, 0));
                cpu.Store(page + Page - 8, ~Stamp(page, 0));
            }
            while (!stop.IsSet)
            {
                int i = random.Next(generation.Length);
                ulong page = start + (ulong)i * Page;
                long head = cpu.Load<long>(page), tail = cpu.Load<long>(page + Page - 8);
                if (head != Stamp(page, generation[i]) || tail != ~Stamp(page, generation[i]))
                {
                    failures.Enqueue($"page {page:x}: generation {generation[i]} expected, read {head:x}/{tail:x}");
                    return;
                }
                generation[i]++;
                cpu.Store(page, Stamp(page, generation[i]));
                cpu.Store(page + Page - 8, ~Stamp(page, generation[i]));
            }
        }
        catch (Exception e)
        {
            failures.Enqueue(e.ToString());
        }
    }

    // The other thread: a small region mapped, written, checked and unmapped, over and over, so VMAs come and go beside
    // the workers and unmaps free frames and slots while reclaim runs.
    private static void MapWriteUnmap(AddressSpace space, ManualResetEventSlim stop, ConcurrentQueue<string> failures, ref long rounds)
    {
        try
        {
            using Cpu cpu = space.AttachCpu();
            const int pages = 16;
            for (int round = 1; !stop.IsSet; round++)
            {
                ulong scratch = space.Map(0, pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
                for (int i = 0; i < pages; i++)
                {
                    cpu.Store(scratch + (ulong)i * Page, Stamp(scratch + (ulong)i * Page, round));
                }
                for (int i = 0; i < pages; i++)
                {
                    ulong page = scratch + (ulong)i * Page;
                    if (cpu.Load<long>(page) != Stamp(page, round))
                    {
                        failures.Enqueue($"scratch page {page:x}: round {round} stamp lost");
                        return;
                    }
                }
                space.Unmap(scratch, pages * Page);
                Interlocked.Increment(ref rounds);
            }
        }
        catch (Exception e)
        {
            failures.Enqueue(e.ToString());
        }
    }

    // The fork variant's thread: a child of the whole address space, disposed at once, over and over; the child shares
    // every swap entry and anonymous page, so its teardown drops swap counts and references while reclaim runs.
    private static void ForkAndDispose(AddressSpace space, ManualResetEventSlim stop, ConcurrentQueue<string> failures, ref long forks)
    {
        try
        {
            while (!stop.IsSet)
            {
                space.Fork().Dispose();
                Interlocked.Increment(ref forks);
                Thread.Sleep(10);
            }
        }
        catch (Exception e)
        {
            failures.Enqueue(e.ToString());
        }
    }
}
