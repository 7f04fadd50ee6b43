using System.Collections.Concurrent;
using System.Diagnostics;
using Faultline.Concurrency;
using Xunit;

namespace Faultline.Tests.Stress;

/// <summary>
/// Bounded stress of the speculative path: Cpu threads fault and write stamped data into their own regions while a
/// mutator maps, unmaps, re-protects and splits the VMAs around and over them. The checks only use facts the threads
/// can prove from published phase counters, so a reported violation is always a real one.
/// </summary>
public sealed class SpeculativeStressTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const ulong WorkerStride = 16UL << 20;
    private const int Workers = 2;
    private static readonly TimeSpan Duration = TimeSpan.FromSeconds(3);

    // Per worker, contiguous and with equal flags, so the mutator's changes keep merging and splitting the VMA that
    // the worker faults in:
    //   [0, 512)      stable: always mapped read-write; every store succeeds, every page keeps its last stamp
    //   [512, 1024)   scratch: one whole PTE table, unmapped and remapped by the worker itself each pass (tables are
    //                 freed and re-allocated speculatively)
    //   [1024, 1152)  toggled: the mutator flips it read-only / read-write (splits)
    //   [1152, 1280)  volatile: the mutator unmaps it, maps it, and maps over it (MAP_FIXED replace)
    //   [1280, 1536)  neighbour: the mutator maps, unmaps and splits it; never accessed
    private const ulong StablePages = 512, ScratchAt = 512, ScratchPages = 512, ToggleAt = 1024, TogglePages = 128;
    private const ulong VolatileAt = 1152, VolatilePages = 128, NeighbourAt = 1280, NeighbourPages = 256, RegionPages = 1536;

    private sealed class Region
    {
        public Region(int index) => Start = Base + (ulong)index * WorkerStride;

        public ulong Start { get; }
        public ulong At(ulong page) => Start + page * Page;

        // Phase counters, changed only by the mutator. toggle % 4: 0 read-write (stable), 1 becoming read-only,
        // 2 read-only (stable), 3 becoming read-write. volatile % 4: 0 mapped (stable), 1 being unmapped,
        // 2 unmapped (stable), 3 being mapped. A worker that reads the same value before and after an access knows
        // the state was stable for the whole access. Soundness: the mutator moves to a stable phase only after the
        // operation returned (its TLB flush and grace period done), and leaves it before starting the next one; the
        // worker's phase reads are acquire loads around the access, so "same stable value before and after" means
        // the access began after the operation completed and ended before the next one started.
        public int TogglePhase;
        public int VolatilePhase;
        public bool NeighbourMapped;
    }

    [Fact]
    public void FaultsRacingMapUnmapProtectKeepDataAndNeverUseUnmappedMemory()
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = FaultPath.Speculative,
            PhysicalMemoryBytes = 64 << 20,
            SpeculativePageTableAllocation = true,
            PoisonFreedFrames = true,
        });
        int framesBaseline = space.FramesInUse;
        int tablesBaseline = space.PageTablePages;
        var regions = new Region[Workers];
        for (int i = 0; i < Workers; i++)
        {
            regions[i] = new Region(i);
            space.Map(regions[i].Start, NeighbourAt * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        }
        var cpus = new Cpu[Workers];
        for (int i = 0; i < Workers; i++)
        {
            cpus[i] = space.AttachCpu();
        }

        // Jitter: now and then a fault spins at the steps between its validations and its install, widening the
        // windows a writer must hit (fault injection through the probe points; they are off in production). Without
        // it the windows are a few instructions wide and a 3-second run on two cores almost never hits them.
        space.Descriptor.Probes.Handler = point =>
        {
            if (point is ProbePoint.SpeculativeBeforeHandle or ProbePoint.SpeculativeBeforePteLock or ProbePoint.SpeculativeAfterSnapshot
                && Random.Shared.Next(4) == 0)
            {
                Thread.SpinWait(Random.Shared.Next(100, 2000));
            }
        };
        var violations = new ConcurrentQueue<string>();
        var deadline = Stopwatch.StartNew();
        bool Running() => deadline.Elapsed < Duration && violations.Count < 20;
        var threads = new List<Thread>();
        for (int i = 0; i < Workers; i++)
        {
            int index = i;
            threads.Add(new Thread(() => Guard(violations, $"worker {index}", () => Work(space, cpus[index], regions[index], index, violations, Running))));
        }
        threads.Add(new Thread(() => Guard(violations, "mutator", () => Mutate(space, regions, violations, Running))));
        foreach (Thread t in threads)
        {
            t.IsBackground = true;
            t.Start();
        }
        TimeSpan hang = Duration + TimeSpan.FromSeconds(5);
        foreach (Thread t in threads)
        {
            Assert.True(t.Join(hang - deadline.Elapsed < TimeSpan.Zero ? TimeSpan.Zero : hang - deadline.Elapsed), "a stress thread hung (deadlock?)");
        }

        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        string summary = string.Join(" ", counters.Where(kv => kv.Value != 0).Select(kv => $"{kv.Key}={kv.Value}"));
        Assert.True(violations.IsEmpty, string.Join(Environment.NewLine, violations.Take(10).Append(summary)));
        Assert.True(counters["speculative_pgfault"] > 0, "the stress never exercised the speculative path: " + summary);

        foreach (Region region in regions)
        {
            space.Unmap(region.Start, RegionPages * Page);
        }
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }
        Assert.Equal(0, space.MapCount);
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(tablesBaseline, space.PageTablePages);
        Assert.Equal(framesBaseline, space.FramesInUse);
    }

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

    private static void ExpectNothingResident(AddressSpace space, ulong start, ulong pages, ConcurrentQueue<string> violations, string what)
    {
        for (ulong p = 0; p < pages; p++)
        {
            if (space.IsResident(start + p * Page))
            {
                violations.Enqueue($"mutator: a PTE appeared at 0x{start + p * Page:x} in the unmapped {what} range");
                return;
            }
        }
    }

    private static long Stamp(int worker, long pass, ulong page) => ((long)(worker + 1) << 56) | (pass << 20) | (long)page;

    private static void Work(AddressSpace space, Cpu cpu, Region r, int worker, ConcurrentQueue<string> violations, Func<bool> running)
    {
        var toggled = new long[TogglePages];
        for (long pass = 0; running(); pass++)
        {
            // Stable pages: the previous pass's stamp is still there, the new one lands.
            for (ulong p = 0; p < StablePages; p++)
            {
                ulong at = r.At(p) + (p % 64) * 8;
                long seen = cpu.Load<long>(at);
                long expected = pass == 0 ? 0 : Stamp(worker, pass - 1, p);
                if (seen != expected)
                {
                    violations.Enqueue($"worker {worker} pass {pass}: stable page {p} holds 0x{seen:x}, expected 0x{expected:x}");
                }
                AccessOutcome stored = cpu.TryStore(at, Stamp(worker, pass, p));
                if (stored != AccessOutcome.Ok)
                {
                    violations.Enqueue($"worker {worker} pass {pass}: store to stable page {p} gave {stored}");
                }
            }

            // Scratch: a fresh mapping each pass, first-touch faults (and table allocation) on every page.
            space.Unmap(r.At(ScratchAt), ScratchPages * Page);
            space.Map(r.At(ScratchAt), ScratchPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            for (ulong p = ScratchAt; p < ScratchAt + ScratchPages; p++)
            {
                AccessOutcome stored = cpu.TryStore(r.At(p), Stamp(worker, pass, p));
                long seen = stored == AccessOutcome.Ok ? cpu.Load<long>(r.At(p)) : 0;
                if (stored != AccessOutcome.Ok || seen != Stamp(worker, pass, p))
                {
                    violations.Enqueue($"worker {worker} pass {pass}: scratch page {p}: store {stored}, read 0x{seen:x}");
                }
            }

            // Toggled: writes succeed exactly when the region was read-write throughout; data survives protection changes.
            for (ulong i = 0; i < TogglePages; i += 3)
            {
                ulong at = r.At(ToggleAt + i);
                int before = Volatile.Read(ref r.TogglePhase);
                long stamp = Stamp(worker, pass, ToggleAt + i);
                AccessOutcome stored = cpu.TryStore(at, stamp);
                int after = Volatile.Read(ref r.TogglePhase);
                if (stored == AccessOutcome.Ok)
                {
                    toggled[i] = stamp;
                }
                if (before == after && before % 4 == 0 && stored != AccessOutcome.Ok)
                {
                    violations.Enqueue($"worker {worker}: store to read-write toggled page {i} gave {stored}");
                }
                if (before == after && before % 4 == 2 && stored != AccessOutcome.SegvAccErr)
                {
                    violations.Enqueue($"worker {worker}: store to read-only toggled page {i} gave {stored}");
                }
                if (stored is not (AccessOutcome.Ok or AccessOutcome.SegvAccErr))
                {
                    violations.Enqueue($"worker {worker}: store to toggled page {i} gave {stored}");
                }
                AccessOutcome loaded = cpu.TryLoad(at, out long seen);
                if (loaded != AccessOutcome.Ok || seen != toggled[i])
                {
                    violations.Enqueue($"worker {worker}: toggled page {i}: load {loaded} 0x{seen:x}, expected 0x{toggled[i]:x}");
                }
            }

            // Volatile: no access succeeds while the range is known unmapped; a stable mapping keeps what was written.
            for (ulong i = 0; i < VolatilePages; i++)
            {
                ulong at = r.At(VolatileAt + i);
                int before = Volatile.Read(ref r.VolatilePhase);
                long stamp = Stamp(worker, pass, VolatileAt + i);
                AccessOutcome stored = cpu.TryStore(at, stamp);
                AccessOutcome loaded = cpu.TryLoad(at, out long seen);
                int after = Volatile.Read(ref r.VolatilePhase);
                if (before != after)
                {
                    continue;
                }
                if (before % 4 == 2 && (stored != AccessOutcome.SegvMapErr || loaded != AccessOutcome.SegvMapErr))
                {
                    violations.Enqueue($"worker {worker}: access to unmapped volatile page {i}: store {stored}, load {loaded} 0x{seen:x}");
                }
                if (before % 4 == 0 && (stored != AccessOutcome.Ok || loaded != AccessOutcome.Ok || seen != stamp))
                {
                    violations.Enqueue($"worker {worker}: mapped volatile page {i}: store {stored}, load {loaded} 0x{seen:x}, expected 0x{stamp:x}");
                }
            }
            Thread.Yield();
        }
    }

    private static void Mutate(AddressSpace space, Region[] regions, ConcurrentQueue<string> violations, Func<bool> running)
    {
        var random = new Random(12345);
        void Check(Errno error, string what)
        {
            if (error != Errno.None)
            {
                violations.Enqueue($"mutator: {what} failed with {error}");
            }
        }
        while (running())
        {
            Region r = regions[random.Next(regions.Length)];
            switch (random.Next(8) switch { 6 or 7 => 1, int n => n })
            {
                case 0: // flip the toggled range between read-write and read-only
                {
                    int phase = Volatile.Read(ref r.TogglePhase);
                    Volatile.Write(ref r.TogglePhase, phase + 1);
                    Check(space.TryProtect(r.At(ToggleAt), TogglePages * Page, phase % 4 == 0 ? Protection.Read : Protection.ReadWrite), "protect toggled");
                    Volatile.Write(ref r.TogglePhase, phase + 2);
                    break;
                }
                case 1: // unmap or map the volatile range
                {
                    int phase = Volatile.Read(ref r.VolatilePhase);
                    Volatile.Write(ref r.VolatilePhase, phase + 1);
                    if (phase % 4 == 0)
                    {
                        Check(space.TryUnmap(r.At(VolatileAt), VolatilePages * Page), "unmap volatile");
                    }
                    else
                    {
                        // Unmapped since the last munmap returned: no fault, however late, may have installed a PTE.
                        ExpectNothingResident(space, r.At(VolatileAt), VolatilePages, violations, "volatile");
                        Check(space.TryMap(r.At(VolatileAt), VolatilePages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _), "map volatile");
                    }
                    Volatile.Write(ref r.VolatilePhase, phase + 2);
                    break;
                }
                case 2: // map over the volatile range (and the neighbour) while it may be mapped: a MAP_FIXED replace
                {
                    int phase = Volatile.Read(ref r.VolatilePhase);
                    if (phase % 4 != 0)
                    {
                        break;
                    }
                    Volatile.Write(ref r.VolatilePhase, phase + 3); // "being mapped", then stable-mapped again at +4
                    Check(space.TryMap(r.At(VolatileAt), (VolatilePages + NeighbourPages) * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _), "map over volatile");
                    r.NeighbourMapped = true;
                    Volatile.Write(ref r.VolatilePhase, phase + 4);
                    break;
                }
                case 3: // map or unmap the neighbour: merges with or splits off the worker's VMA
                    if (r.NeighbourMapped)
                    {
                        Check(space.TryUnmap(r.At(NeighbourAt), NeighbourPages * Page), "unmap neighbour");
                    }
                    else
                    {
                        ExpectNothingResident(space, r.At(NeighbourAt), NeighbourPages, violations, "neighbour");
                        Check(space.TryMap(r.At(NeighbourAt), NeighbourPages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _), "map neighbour");
                    }
                    r.NeighbourMapped = !r.NeighbourMapped;
                    break;
                case 4: // split the neighbour by protecting its middle, then merge it back
                    if (r.NeighbourMapped)
                    {
                        ulong middle = r.At(NeighbourAt + 64);
                        Check(space.TryProtect(middle, 64 * Page, Protection.Read), "protect neighbour middle");
                        Check(space.TryProtect(middle, 64 * Page, Protection.ReadWrite), "unprotect neighbour middle");
                    }
                    break;
                default: // an unmap overlapping the end of the worker's region and beyond, when nothing there is in use
                {
                    int phase = Volatile.Read(ref r.VolatilePhase);
                    if (phase % 4 != 2)
                    {
                        break;
                    }
                    Check(space.TryUnmap(r.At(VolatileAt), (RegionPages - VolatileAt + 64) * Page), "unmap tail");
                    r.NeighbourMapped = false;
                    break;
                }
            }
            Thread.SpinWait(random.Next(1000));
        }
    }
}
