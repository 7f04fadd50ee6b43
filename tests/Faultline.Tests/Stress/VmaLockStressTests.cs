using System.Collections.Concurrent;
using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Stress;

/// <summary>
/// Bounded stress of the per-VMA-lock fault path: faulting threads keep stamped data in their own regions while one
/// writer maps, unmaps, re-protects and splits the regions around them (and parts of them), so their VMAs are
/// replaced, merged and split under their faults.
/// </summary>
public sealed class VmaLockStressTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;
    private const int Faulters = 2;
    private const ulong DataPages = 256;   // D: stamped data, never unmapped (RW, parts RWX at times)
    private const ulong ChurnPages = 64;   // E: right after D, unmapped/remapped/re-protected; merges with D when RW
    private const ulong ProbePages = 16;   // C: right before D, only ever loaded (must read 0)
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(3);

    private static ulong Base(int t) => 0x1000_0000UL + (ulong)t * 0x100_0000UL;
    private static ulong ProbeRegion(int t) => Base(t);
    private static ulong DataRegion(int t) => Base(t) + ProbePages * Page;
    private static ulong ChurnRegion(int t) => DataRegion(t) + DataPages * Page;

    [Fact]
    public void FaultsAgainstMapUnmapProtectSplitKeepDataAndLeaveConsistentRefCounts()
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = FaultPath.VmaLock,
            PhysicalMemoryBytes = 64 << 20,
            PoisonFreedFrames = true,
        });
        MemoryDescriptor mm = space.Descriptor;
        for (int t = 0; t < Faulters; t++)
        {
            space.Map(ProbeRegion(t), ProbePages * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            space.Map(DataRegion(t), DataPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            space.Map(ChurnRegion(t), ChurnPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        }
        var cpus = new Cpu[Faulters];
        for (int t = 0; t < Faulters; t++)
        {
            cpus[t] = space.AttachCpu();
        }
        using var checker = space.AttachCpu();
        // Widen the race windows: sometimes pause a fault between taking its VMA lock and installing its PTE, and a
        // writer between write-locking a VMA and detaching it.
        mm.Probes.Handler = point =>
        {
            if ((point is ProbePoint.VmaLockLocked or ProbePoint.AnonymousBeforePteLock or ProbePoint.VmaBeforeDetach)
                && Random.Shared.Next(8) == 0)
            {
                Thread.SpinWait(Random.Shared.Next(2_000));
            }
        };

        var failures = new ConcurrentQueue<string>();
        // Objects for the refcount checks, identities for counting replacements: a detached VMA is reused for a later
        // one under a new Id, so objects alone undercount.
        var seen = new HashSet<Vma>(ReferenceEqualityComparer.Instance);
        var seenIds = new HashSet<long>();
        void Remember()
        {
            foreach (Vma vma in VmaTree.InOrder(mm.Tree.Published))
            {
                seen.Add(vma);
                seenIds.Add(vma.Id);
            }
        }
        Remember();

        var expected = new long[Faulters][];
        var deadline = DateTime.UtcNow + Duration;
        long writerOps = 0;
        using (var threads = new ThreadScope())
        {
            var faulters = new List<ThreadRunner<long>>();
            for (int t = 0; t < Faulters; t++)
            {
                int id = t;
                expected[id] = new long[DataPages];
                faulters.Add(threads.Run($"faulter{id}", () => Fault(id, cpus[id], expected[id], deadline, failures)));
            }
            var writer = threads.Run("writer", () =>
            {
                var random = new Random(1234);
                var layout = new Layout();
                long ops = 0;
                while (DateTime.UtcNow < deadline && failures.IsEmpty)
                {
                    Mutate(space, random, layout);
                    Remember(); // the only writer: the published tree is current between its operations
                    CheckPageTables(mm, layout, failures);
                    ops++;
                }
                return ops;
            });
            writerOps = writer.Join(60_000);
            foreach (var faulter in faulters)
            {
                output.WriteLine($"faulter accesses: {faulter.Join(60_000)}");
            }
        }
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }

        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(20)));

        // Every stamp survived every replacement of the VMAs around and over it.
        for (int t = 0; t < Faulters; t++)
        {
            for (ulong p = 0; p < DataPages; p++)
            {
                if (expected[t][p] != 0)
                {
                    Assert.Equal(expected[t][p], checker.Load<long>(DataRegion(t) + p * Page + 8));
                }
            }
        }

        // Quiescent: live VMAs hold just the attached reference, replaced ones (waiting for reuse) are at 0 with nobody
        // inside.
        Assert.False(mm.MmapLock.IsLocked);
        var live = new HashSet<Vma>(VmaTree.InOrder(mm.Tree.Published), ReferenceEqualityComparer.Instance);
        Remember();
        foreach (Vma vma in seen)
        {
            if (live.Contains(vma))
            {
                Assert.True(vma.RefCount == 1, $"live {vma} has vm_refcnt {vma.RefCount:x}");
            }
            else
            {
                Assert.True(vma.RefCount == 0, $"detached {vma} has vm_refcnt {vma.RefCount:x}");
            }
        }
        int detached = seenIds.Count - live.Count;

        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        output.WriteLine($"writer ops {writerOps}, VMAs seen {seen.Count}, detached {detached}, live {live.Count}");
        foreach (string name in new[] { "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss", "mmap_lock_fault", "segv_maperr", "segv_accerr" })
        {
            output.WriteLine($"{name} {counters[name]}");
        }
        Assert.True(writerOps > 100, $"only {writerOps} writer operations");
        Assert.True(detached > 100, $"only {detached} VMAs were replaced");
        Assert.True(counters["vma_lock_success"] > 100, "the VMA-lock path was hardly used");
    }

    // What the writer made of the churn and probe regions, page by page: a fault under a VMA lock that the writer
    // did not exclude would leave a PTE the layout forbids (a page in an unmapped range, a writable one in a
    // read-only range), which no legitimate fault can install once the writer's operation returned.
    private sealed class Layout
    {
        public const sbyte Unmapped = -1;
        public readonly sbyte[][] Churn = Enumerable.Range(0, Faulters).Select(_ => Filled((int)ChurnPages, (sbyte)Protection.ReadWrite)).ToArray();
        public readonly sbyte[][] Probe = Enumerable.Range(0, Faulters).Select(_ => Filled((int)ProbePages, (sbyte)Protection.Read)).ToArray();

        private static sbyte[] Filled(int n, sbyte value) => Enumerable.Repeat(value, n).ToArray();
    }

    // One writer step on a random faulter's neighbourhood.
    private static void Mutate(AddressSpace space, Random random, Layout layout)
    {
        int t = random.Next(Faulters);
        ulong churn = ChurnRegion(t);
        switch (random.Next(7))
        {
            case 0:
                if (space.TryUnmap(churn, ChurnPages * Page) == Errno.None)
                {
                    Array.Fill(layout.Churn[t], Layout.Unmapped);
                }
                break;
            case 1:
                // MAP_FIXED over whatever is there; RW merges with the data region in front of it.
                if (space.TryMap(churn, ChurnPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _) == Errno.None)
                {
                    Array.Fill(layout.Churn[t], (sbyte)Protection.ReadWrite);
                }
                break;
            case 2:
            {
                int first = random.Next((int)ChurnPages - 1);
                int pages = 1 + random.Next((int)ChurnPages - first - 1);
                Protection[] choices = [Protection.Read, Protection.None, Protection.ReadWrite];
                Protection protection = choices[random.Next(choices.Length)];
                if (space.TryProtect(churn + (ulong)first * Page, (ulong)pages * Page, protection) == Errno.None)
                {
                    Array.Fill(layout.Churn[t], (sbyte)protection, first, pages);
                }
                break;
            }
            case 3:
            case 4:
            {
                // Split the data region in three and merge it back; stores stay allowed throughout.
                ulong data = DataRegion(t);
                ulong first = 1 + (ulong)random.Next((int)DataPages - 2);
                ulong pages = 1 + (ulong)random.Next((int)(DataPages - first - 1));
                space.TryProtect(data + first * Page, pages * Page, Protection.ReadWrite | Protection.Execute);
                Thread.Yield();
                space.TryProtect(data + first * Page, pages * Page, Protection.ReadWrite);
                break;
            }
            case 5:
            {
                int page = random.Next((int)ProbePages);
                if (space.TryUnmap(ProbeRegion(t) + (ulong)page * Page, Page) == Errno.None)
                {
                    layout.Probe[t][page] = Layout.Unmapped;
                }
                break;
            }
            default:
            {
                Protection protection = random.Next(2) == 0 ? Protection.Read : Protection.ReadWrite;
                if (space.TryMap(ProbeRegion(t), ProbePages * Page, protection, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _) == Errno.None)
                {
                    Array.Fill(layout.Probe[t], (sbyte)protection);
                }
                break;
            }
        }
    }

    private static void CheckPageTables(MemoryDescriptor mm, Layout layout, ConcurrentQueue<string> failures)
    {
        mm.MmapLock.EnterRead();
        try
        {
            for (int t = 0; t < Faulters; t++)
            {
                Check(ChurnRegion(t), layout.Churn[t], "churn");
                Check(ProbeRegion(t), layout.Probe[t], "probe");
            }
        }
        finally
        {
            mm.MmapLock.ExitRead();
        }

        void Check(ulong region, sbyte[] pages, string name)
        {
            for (int p = 0; p < pages.Length; p++)
            {
                ulong pte = mm.PageTable.Lookup(region + (ulong)p * Page, mm.Probes);
                bool bad = pages[p] == Layout.Unmapped ? Pte.MapsFrame(pte)
                    : (pages[p] & (sbyte)Protection.Write) == 0 && (pte & Pte.Writable) != 0;
                if (bad)
                {
                    string state = pages[p] == Layout.Unmapped ? "unmapped" : ((Protection)pages[p]).ToString();
                    failures.Enqueue($"{name} page {p} of region {region:x} is {state} but its PTE is {pte:x}");
                }
            }
        }
    }

    // A faulter: stamps and checks its data region, stamps its churn region (contents may vanish with an unmap or a
    // MAP_FIXED, but never turn into anything else), loads the probe region (always zero).
    private static long Fault(int t, Cpu cpu, long[] expected, DateTime deadline, ConcurrentQueue<string> failures)
    {
        var random = new Random(100 + t);
        var churnExpected = new long[ChurnPages];
        long counter = 0, accesses = 0;
        ulong data = DataRegion(t), churn = ChurnRegion(t), probe = ProbeRegion(t);
        long Stamp(ulong page) => ((long)(t + 1) << 56) | ((long)page << 40) | (++counter & 0xFF_FFFF_FFFF);

        while (DateTime.UtcNow < deadline && failures.IsEmpty)
        {
            for (int i = 0; i < 64; i++, accesses++)
            {
                ulong p = (ulong)random.Next((int)DataPages);
                ulong at = data + p * Page + 8;
                if (expected[p] == 0 || random.Next(2) == 0)
                {
                    long stamp = Stamp(p);
                    AccessOutcome stored = cpu.TryStore(at, stamp);
                    if (stored != AccessOutcome.Ok)
                    {
                        failures.Enqueue($"faulter {t}: store to data page {p} gave {stored}");
                    }
                    expected[p] = stamp;
                }
                else
                {
                    AccessOutcome loaded = cpu.TryLoad(at, out long value);
                    if (loaded != AccessOutcome.Ok || value != expected[p])
                    {
                        failures.Enqueue($"faulter {t}: data page {p} read {loaded} {value:x}, expected {expected[p]:x}");
                    }
                }

                ulong c = (ulong)random.Next((int)ChurnPages);
                ulong cAt = churn + c * Page + 16;
                if (random.Next(2) == 0)
                {
                    long stamp = Stamp(c);
                    switch (cpu.TryStore(cAt, stamp))
                    {
                        case AccessOutcome.Ok:
                            churnExpected[c] = stamp;
                            break;
                        case AccessOutcome.SegvMapErr: // see below: the old contents may still show
                        case AccessOutcome.SegvAccErr:
                            break;
                        case var other:
                            failures.Enqueue($"faulter {t}: store to churn page {c} gave {other}");
                            break;
                    }
                }
                else
                {
                    switch (cpu.TryLoad(cAt, out long value))
                    {
                        case AccessOutcome.Ok when value == 0:
                            churnExpected[c] = 0; // remapped: the old stamp must never show again
                            break;
                        case AccessOutcome.Ok when value == churnExpected[c]:
                        case AccessOutcome.SegvAccErr:
                        // A MAPERR does not mean the old contents are gone yet: until the concurrent munmap flushes
                        // TLBs and returns, an access through a translation cached before it may still see them.
                        case AccessOutcome.SegvMapErr:
                            break;
                        case var outcome:
                            failures.Enqueue($"faulter {t}: churn page {c} read {outcome} {value:x}, expected 0 or {churnExpected[c]:x}");
                            break;
                    }
                }

                AccessOutcome probed = cpu.TryLoad(probe + (ulong)random.Next((int)ProbePages) * Page + 24, out long zero);
                if ((probed == AccessOutcome.Ok && zero != 0) || probed is not (AccessOutcome.Ok or AccessOutcome.SegvMapErr or AccessOutcome.SegvAccErr))
                {
                    failures.Enqueue($"faulter {t}: probe region read {probed} {zero:x}");
                }
            }
        }
        return accesses;
    }
}
