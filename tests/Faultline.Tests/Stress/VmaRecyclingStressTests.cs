using System.Collections.Concurrent;
using System.Diagnostics;
using Faultline.Concurrency;
using Xunit;

namespace Faultline.Tests.Stress;

/// <summary>
/// Lockless readers against VMA and tree-node recycling: Cpu threads take first-touch faults (speculative or under the
/// VMA lock) in mappings they keep remapping, and store into a VMA that a mutator keeps splitting and merging, while
/// the mutator maps, protects and unmaps read-only and read-write neighbours, so retired VMAs and nodes are reused all
/// the time. A fault that used a reused VMA or a torn snapshot would store through the wrong protection (a SIGSEGV
/// here: every VMA the workers touch is writable), install the frame under the wrong anon_vma (the reverse map would
/// not find it at its address), or show another mapping's data (freed frames are poisoned).
/// </summary>
public sealed class VmaRecyclingStressTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x6000_0000;
    private const ulong WorkerStride = 8UL << 20;
    private const int Workers = 2;
    // Per worker: [0, 64) kept mapped, split and merged by the mutator; [65, 96) remapped by the worker each pass (a
    // page apart from the kept VMA, so the mutator's edits never replace it: a reverse-map walk racing a replacement
    // may find no VMA between the unlink of the old one and the link of the new); [96, 160) read-only and read-write
    // neighbours the mutator maps and unmaps.
    private const ulong KeptPages = 64, FreshAt = 65, FreshPages = 31, NeighbourAt = 96, NeighbourPages = 64;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(2);

    [Theory]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void FaultsNeverUseARecycledVmaOrNode(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 32 << 20,
            SpeculativePageTableAllocation = true,
            PoisonFreedFrames = true,
        });
        var cpus = new Cpu[Workers];
        for (int i = 0; i < Workers; i++)
        {
            space.Map(Start(i), KeptPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            cpus[i] = space.AttachCpu();
        }
        // Jitter inside the walk sections, so writers retire and try to reuse what a reader just found.
        space.Descriptor.Probes.Handler = point =>
        {
            if (point is ProbePoint.SpeculativeAfterLookup or ProbePoint.VmaLockAfterLookup or ProbePoint.SpeculativeBeforeHandle
                && Random.Shared.Next(8) == 0)
            {
                Thread.SpinWait(Random.Shared.Next(50, 1000));
            }
        };
        var violations = new ConcurrentQueue<string>();
        var clock = Stopwatch.StartNew();
        bool Running() => clock.Elapsed < Duration && violations.Count < 20;
        var threads = new List<Thread>();
        for (int i = 0; i < Workers; i++)
        {
            int worker = i;
            threads.Add(new Thread(() => Guard(violations, $"worker {worker}", () => Work(space, cpus[worker], worker, violations, Running))));
        }
        threads.Add(new Thread(() => Guard(violations, "mutator", () => Mutate(space, Running))));
        foreach (Thread t in threads)
        {
            t.IsBackground = true;
            t.Start();
        }
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(Duration + TimeSpan.FromSeconds(20)), "a stress thread hung");
        }

        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        string summary = string.Join(" ", counters.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key}={kv.Value}"));
        Assert.True(violations.IsEmpty, string.Join(Environment.NewLine, violations.Take(10).Append(summary)));
        string handled = path == FaultPath.Speculative ? "speculative_pgfault" : "vma_lock_success";
        Assert.True(counters[handled] > 0, "the stress never completed a fault on the path: " + summary);
        Assert.True(space.Descriptor.Vmas.FreeCount + space.Descriptor.Vmas.RetiredCount > 0, "no VMA was recycled");
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }
    }

    private static ulong Start(int worker) => Base + (ulong)worker * WorkerStride;

    private static long Stamp(int worker, long pass, ulong page) => ((long)(worker + 1) << 56) | (pass << 16) | (long)page;

    private static void Guard(ConcurrentQueue<string> violations, string who, Action body)
    {
        try
        {
            body();
        }
        catch (Exception e)
        {
            violations.Enqueue($"{who} crashed: {e}");
        }
    }

    private static void Work(AddressSpace space, Cpu cpu, int worker, ConcurrentQueue<string> violations, Func<bool> running)
    {
        ulong start = Start(worker);
        var kept = new long[KeptPages];
        for (long pass = 0; running(); pass++)
        {
            // Kept: the mutator only changes flags that keep it readable and writable, so every store succeeds and
            // every page keeps the last stamp stored.
            for (ulong p = (ulong)pass % 7; p < KeptPages; p += 7)
            {
                ulong at = start + p * Page;
                long seen = cpu.Load<long>(at);
                if (seen != kept[p])
                {
                    violations.Enqueue($"worker {worker} pass {pass}: kept page {p} holds 0x{seen:x}, expected 0x{kept[p]:x}");
                }
                kept[p] = Stamp(worker, pass, p);
                cpu.Store(at, kept[p]);
            }

            // Fresh: first-touch faults in a new mapping: zero before the store, the stamp after, and the frame found
            // by the reverse map where it was stored (so it went to this mapping's anon_vma).
            ulong fresh = start + FreshAt * Page;
            space.Map(fresh, FreshPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            for (ulong p = 0; p < FreshPages; p += 3)
            {
                ulong at = fresh + p * Page;
                long before = cpu.Load<long>(at);
                cpu.Store(at, Stamp(worker, pass, p));
                long after = cpu.Load<long>(at);
                if (before != 0 || after != Stamp(worker, pass, p))
                {
                    violations.Enqueue($"worker {worker} pass {pass}: fresh page {p} read 0x{before:x} then 0x{after:x}");
                }
            }
            if (pass % 16 == 0)
            {
                ulong at = fresh + 3 * Page;
                IReadOnlyList<PageMapping> mappings = space.GetPageMappings(at);
                if (mappings.Count != 1 || mappings[0].Address != at || !ReferenceEquals(mappings[0].Space, space))
                {
                    violations.Enqueue($"worker {worker} pass {pass}: reverse map of 0x{at:x} found {mappings.Count} mappings");
                }
            }
            space.Unmap(fresh, FreshPages * Page);
        }
    }

    private static void Mutate(AddressSpace space, Func<bool> running)
    {
        var random = new Random(7);
        while (running())
        {
            for (int worker = 0; worker < Workers; worker++)
            {
                ulong start = Start(worker);
                // Split the kept VMA in three and merge it back (its VMA is replaced both times).
                ulong page = start + (ulong)random.Next(1, (int)KeptPages - 4) * Page;
                ulong pages = (ulong)random.Next(1, 4);
                space.Protect(page, pages * Page, Protection.ReadWrite | Protection.Execute);
                space.Protect(page, pages * Page, Protection.ReadWrite);
                // Neighbours: a read-only mapping next to the fresh one, then read-write ones that merge with it.
                ulong neighbour = start + NeighbourAt * Page;
                space.Map(neighbour, NeighbourPages * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                space.Protect(neighbour + 8 * Page, 8 * Page, Protection.ReadWrite);
                space.Map(neighbour + 32 * Page, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                space.Unmap(neighbour, NeighbourPages * Page);
            }
        }
    }
}
