using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Swap-in and reclaim staged against each other and against the writers, with probe gates: two Cpus swapping in one
/// entry (the second gets PTNOTSAME from <c>pte_unmap_same</c> and returns 0), reclaim stopped after unmapping a page
/// while a fault maps it back from the swap cache, a speculative swap-in that finds its VMA changed by munmap, mprotect
/// or mremap (RETRY, then the classic path decides), and reclaim against a copy-on-write fault after fork.
/// </summary>
public sealed class SwapRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const string First = "first";
    private const string Second = "second";
    private const string Reclaimer = "reclaimer";
    private const string Writer = "writer";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path) => new(new FaultlineOptions
    {
        FaultPath = path,
        PhysicalMemoryBytes = 16 << 20,
        PoisonFreedFrames = true,
        Swap = new SwapOptions { SizeBytes = 16 << 20, BackgroundReclaim = false },
    });

    [Theory]
    [MemberData(nameof(Paths))]
    public void TwoCpusSwappingInOneEntryTheSecondFindsThePteChanged(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu first = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        first.Store(a, 41L);
        space.Advise(a, Page, Advice.PageOut);
        Assert.False(space.IsResident(a));

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.SwapInBeforeUnmapSame, ThreadRole.Is(Second));
        var late = threads.Run(Second, () => second.Load<long>(a));
        gate.WaitArrived();
        long raceLost = space.GetCounters()[VmCounters.FaultRaceLost];
        Assert.Equal(41L, threads.Run(First, () => first.Load<long>(a)).Join());
        Assert.Equal(1, space.GetCounters()[VmCounters.SwapIn]);

        gate.Release();
        Assert.Equal(41L, late.Join());
        // pte_unmap_same answered PTNOTSAME: the stopped fault returned 0 without reading the area again.
        Assert.Equal(1, space.GetCounters()[VmCounters.SwapIn]);
        Assert.Equal(raceLost + 1, space.GetCounters()[VmCounters.FaultRaceLost]);
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AFaultMapsThePageBackFromTheSwapCacheWhileReclaimIsWritingItOut(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a, 7L);
        other.Store(a + Page, 8L);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.ReclaimUnmapped, ThreadRole.Is(Reclaimer));
        var pageOut = threads.Run(Reclaimer, () => space.TryAdvise(a, Page, Advice.PageOut));
        gate.WaitArrived();
        Assert.False(space.IsResident(a));
        long speculative = space.GetCounters()[VmCounters.SpeculativePageFault];

        // The fault finds the frame in the swap cache, so even the speculative path needs no I/O and maps it.
        Assert.Equal(AccessOutcome.Ok, threads.Run(First, () => cpu.TryStore(a + 8, 9L)).Join());
        Assert.True(space.IsResident(a));
        if (path == FaultPath.Speculative)
        {
            Assert.Equal(speculative + 1, space.GetCounters()[VmCounters.SpeculativePageFault]);
        }

        gate.Release();
        Assert.Equal(Errno.None, pageOut.Join());
        // Reclaim saw the page mapped again and kept it: nothing was written, nothing lost.
        Assert.True(space.IsResident(a));
        Assert.Equal(0, space.GetCounters()[VmCounters.SwapOut]);
        Assert.Equal(7L, cpu.Load<long>(a));
        Assert.Equal(9L, cpu.Load<long>(a + 8));
        space.Advise(a, 2 * Page, Advice.PageOut);
        Assert.Equal(7L, other.Load<long>(a));
        Assert.Equal(9L, other.Load<long>(a + 8));
        Assert.Equal(8L, other.Load<long>(a + Page));
        Assert.Equal(0, space.PoisonViolations);
    }

    public static TheoryData<string> Edits => new() { "munmap", "mprotect", "mremap" };

    [Theory]
    [MemberData(nameof(Edits))]
    public void ASpeculativeSwapInWhoseVmaChangedRetriesOnTheClassicPath(string edit)
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a, 5L);
        space.Advise(a, 4 * Page, Advice.PageOut);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.SwapInBeforeUnmapSame, ThreadRole.Is(First));
        var fault = threads.Run(First, () => (cpu.TryLoad(a, out long value), value));
        gate.WaitArrived();
        long changed = space.GetCounters()[VmCounters.SpeculativeVmaChanged];
        ulong moved = 0;
        Errno done = threads.Run(Writer, () => edit switch
        {
            "munmap" => space.TryUnmap(a, 4 * Page),
            "mprotect" => space.TryProtect(a, 4 * Page, Protection.Read),
            _ => space.TryRemap(a, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 0x10_0000, out moved),
        }).Join();
        Assert.Equal(Errno.None, done);

        gate.Release();
        (AccessOutcome outcome, long read) = fault.Join();
        // pte_unmap_same found the VMA changed: RETRY, and the classic path handled the access on the new layout.
        Assert.Equal(changed + 1, space.GetCounters()[VmCounters.SpeculativeVmaChanged]);
        if (edit == "mprotect")
        {
            Assert.Equal(AccessOutcome.Ok, outcome);
            Assert.Equal(5L, read);
        }
        else
        {
            Assert.Equal(AccessOutcome.SegvMapErr, outcome);
        }
        if (edit == "mremap")
        {
            Assert.Equal(5L, other.Load<long>(moved));
            space.Unmap(moved, 4 * Page);
        }
        else if (edit == "mprotect")
        {
            space.Unmap(a, 4 * Page);
        }
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
    }

    [Fact]
    public void TheSpeculativePathNeverWaitsForTheAreaAndTheClassicPathReads()
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a, 3L);
        space.Advise(a, Page, Advice.PageOut);
        long fallbacks = space.GetCounters()[VmCounters.SpeculativeFallback];
        Assert.Equal(3L, cpu.Load<long>(a));
        Assert.Equal(fallbacks + 1, space.GetCounters()[VmCounters.SpeculativeFallback]);
        Assert.Equal(1, space.GetCounters()[VmCounters.SwapIn]);
        Assert.Equal(1, space.GetCounters()[VmCounters.MajorFault]);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ReclaimAgainstACopyOnWriteFaultAfterFork(FaultPath path)
    {
        using AddressSpace parent = NewSpace(path);
        ulong a = parent.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu parentCpu = parent.AttachCpu();
        using Cpu parentOther = parent.AttachCpu();
        parentCpu.Store(a, 100L);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        using Cpu childOther = child.AttachCpu();
        MemoryNode node = parent.Descriptor.Node!;
        long pfn = parent.Descriptor.PageTable.GetMappedFrame(a);
        Assert.True(node.Memory.Lru!.TryIsolate(pfn));
        node.Memory.Put(pfn);

        using var threads = new ThreadScope();
        // Stopped once the parent's entry holds the swap entry and its TLBs were flushed; the child's is unmapped too.
        using var gate = new ProbeGate(parent, ProbePoint.ReclaimUnmapped, ThreadRole.Is(Reclaimer));
        var reclaim = threads.Run(Reclaimer, () => PageReclaim.ReclaimBatch(node, [(int)pfn], ignoreReferences: true) > 0);
        gate.WaitArrived();
        Assert.False(parent.IsResident(a));
        Assert.False(child.IsResident(a));

        // The child's write swaps the shared page in from the cache (read-only: the parent's entry still names the
        // slot) and copies it.
        Assert.Equal(AccessOutcome.Ok, threads.Run(Writer, () => childCpu.TryStore(a, 200L)).Join());
        Assert.Equal(1, child.GetCounters()[VmCounters.CowFault]);

        gate.Release();
        reclaim.Join();
        Assert.Equal(200L, childCpu.Load<long>(a));
        Assert.Equal(100L, parentCpu.Load<long>(a));
        parent.Advise(a, Page, Advice.PageOut);
        child.Advise(a, Page, Advice.PageOut);
        Assert.Equal(100L, parentOther.Load<long>(a));
        Assert.Equal(200L, childOther.Load<long>(a));
        Assert.Equal(0, parent.PoisonViolations);
    }
}
