using Faultline.Paging;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The per-Cpu cache of 2 MiB translations (<see cref="FaultlineOptions.HugeTlbEntries"/>) behind the software TLB: a
/// cached block is never used after a change to any of its pages (split then DONTNEED, mprotect or munmap of one page,
/// collapse), and it never grants more than the PMD did (a read-only or copy-on-write PMD, a clean one). The TLB has
/// two slots, so loading page p + 2 evicts page p's 4 KiB entry and the next access to p asks the 2 MiB cache.
/// </summary>
public sealed class HugeTlbTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;
    private const ulong Base = 0x4000_0000;
    private const ulong P = Base + 5 * Page;        // the page changed
    private const ulong Neighbour = Base + 7 * Page; // same TLB slot as P, same 2 MiB block

    private static AddressSpace NewSpace(bool zeroPage = false, int hugeEntries = 512) =>
        new(new FaultlineOptions
        {
            FaultPath = FaultPath.VmaLock,
            PhysicalMemoryBytes = 32 << 20,
            MapZeroPageOnRead = zeroPage,
            TlbEntries = 2,
            HugeTlbEntries = hugeEntries,
            PoisonFreedFrames = true,
        });

    private static ulong MapHuge(AddressSpace space)
    {
        ulong a = MapFixed(space, Base, PmdSpan);
        space.Advise(a, PmdSpan, Advice.HugePage);
        return a;
    }

    private static bool IsHugeAt(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.WalkLockless(address, out _, out _) == WalkStatus.HugePmd;

    // Writes P and its neighbour (one huge fault, the block cached dirty), then evicts P's 4 KiB entry through the cache.
    private static void WriteAndCache(AddressSpace space, Cpu cpu)
    {
        cpu.Store(P, 0x55L);
        cpu.Store(Neighbour, 0x77L);
        Assert.True(IsHugeAt(space, P));
        Dictionary<string, long> before = Counters(space);
        Assert.Equal(0x55L, cpu.Load<long>(P));
        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
        Assert.Equal(2, Delta(before, space, VmCounters.TlbHugeFill));
        Assert.Equal(0, Delta(before, space, VmCounters.TlbFill));
    }

    [Fact]
    public void MissesInACachedBlockFillWithoutWalking()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        WriteAndCache(space, cpu);
        Dictionary<string, long> before = Counters(space);
        for (ulong offset = 0; offset < PmdSpan; offset += 8 * Page)
        {
            Assert.Equal(offset == 5 * Page ? 0x55L : offset == 7 * Page ? 0x77L : 0L, cpu.Load<long>(Base + offset));
        }
        Assert.Equal(0, Delta(before, space, VmCounters.TlbFill));
        Assert.Equal((long)(PmdSpan / (8 * Page)), Delta(before, space, VmCounters.TlbHugeFill));
    }

    [Fact]
    public void WithoutTheCacheEveryMissWalks()
    {
        using AddressSpace space = NewSpace(hugeEntries: 0);
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(P, 1L);
        Dictionary<string, long> before = Counters(space);
        cpu.Load<long>(Neighbour);
        cpu.Load<long>(P);
        Assert.Equal(2, Delta(before, space, VmCounters.TlbFill));
        Assert.Equal(0, Delta(before, space, VmCounters.TlbHugeFill));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(-1)]
    public void ACountNotZeroOrAPowerOfTwoIsRefused(int entries) =>
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { HugeTlbEntries = entries }));

    [Fact]
    public void DontNeedOfOnePageInsideIsNotReadThroughTheCachedBlock()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        WriteAndCache(space, cpu);

        // Splits the PMD (no flush owed) and zaps P alone: a one-page shootdown, which must drop the block too.
        space.Advise(P, Page, Advice.DontNeed);

        Assert.False(IsHugeAt(space, P));
        Assert.Equal(0L, cpu.Load<long>(P));
        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
    }

    [Fact]
    public void MprotectOfOnePageInsideIsNotWrittenThroughTheCachedBlock()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        WriteAndCache(space, cpu);

        space.Protect(P, Page, Protection.Read);

        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(P, 1L));
        Assert.Equal(0x55L, cpu.Load<long>(P));
        cpu.Store(Neighbour, 0x78L);
        Assert.Equal(0x78L, cpu.Load<long>(Neighbour));
    }

    [Fact]
    public void MunmapOfOnePageInsideIsNotReadThroughTheCachedBlock()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        WriteAndCache(space, cpu);

        space.Unmap(P, Page);

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(P, out long _));
        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
    }

    [Fact]
    public void ACollapseAfterASplitThatKeptTheCachedBlockIsSeen()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        WriteAndCache(space, cpu);
        // A VMA split in the middle splits the PMD and changes no translation: the cached block stays, and is still exact.
        space.Advise(Base + PmdSpan / 2, PmdSpan / 2, Advice.Random);
        Assert.False(IsHugeAt(space, P));
        Assert.Equal(0x55L, cpu.Load<long>(P));
        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
        space.Advise(Base + PmdSpan / 2, PmdSpan / 2, Advice.Normal);

        // The collapse copies the block into new frames and frees the old ones after its flush.
        space.Advise(Base, PmdSpan, Advice.Collapse);
        Assert.True(IsHugeAt(space, P));

        cpu.Store(P, 0x56L);
        Assert.Equal(0x56L, other.Load<long>(P));
        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
    }

    [Fact]
    public void AWriteToAReadOnlyHugeMappingThroughTheCacheStillFaults()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(P, 0x55L);
        space.Protect(Base, PmdSpan, Protection.Read);
        Assert.True(IsHugeAt(space, P));
        Dictionary<string, long> before = Counters(space);
        Assert.Equal(0x55L, cpu.Load<long>(P));
        Assert.Equal(0L, cpu.Load<long>(Neighbour));
        Assert.Equal(1, Delta(before, space, VmCounters.TlbHugeFill));

        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(P, 1L));
        Assert.Equal(0x55L, cpu.Load<long>(P));
    }

    [Fact]
    public void AWriteThroughACleanCachedBlockWalksAndDirtiesThePmd()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(P, 0x55L);
        // MADV_FREE of the whole block leaves it huge, writable and clean.
        space.Advise(Base, PmdSpan, Advice.Free);
        Assert.Equal(0UL, Entry(space, P) & Pte.Dirty);
        Assert.Equal(0x55L, cpu.Load<long>(P));
        Assert.Equal(0L, cpu.Load<long>(Neighbour));

        cpu.Store(P, 0x56L);

        Assert.NotEqual(0UL, Entry(space, P) & Pte.Dirty);
        Assert.Equal(0x56L, cpu.Load<long>(P));
    }

    [Fact]
    public void AReadOfTheHugeZeroPageThenAWriteSeesTheNewPageEverywhere()
    {
        using AddressSpace space = NewSpace(zeroPage: true);
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Assert.Equal(0L, cpu.Load<long>(P));
        Assert.Equal(0L, cpu.Load<long>(Neighbour));
        Assert.Equal(0L, cpu.Load<long>(P));

        cpu.Store(P, 0x55L);
        other.Store(Neighbour, 0x77L);

        Assert.Equal(0x77L, cpu.Load<long>(Neighbour));
        Assert.Equal(0x55L, other.Load<long>(P));
        Assert.Equal(0x55L, cpu.Load<long>(P));
    }

    [Fact]
    public void AWriteAfterForkCopiesInsteadOfWritingThroughTheCachedBlock()
    {
        using AddressSpace space = NewSpace();
        MapHuge(space);
        using Cpu cpu = space.AttachCpu();
        WriteAndCache(space, cpu);

        using AddressSpace child = space.Fork();
        using Cpu childCpu = child.AttachCpu();
        cpu.Store(P, 0x56L);

        Assert.Equal(0x56L, cpu.Load<long>(P));
        Assert.Equal(0x55L, childCpu.Load<long>(P));
        Assert.Equal(0x77L, childCpu.Load<long>(Neighbour));
    }

    // The entry mapping an address, read without locks while no writer runs.
    private static ulong Entry(AddressSpace space, ulong address) =>
        space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes);
}
