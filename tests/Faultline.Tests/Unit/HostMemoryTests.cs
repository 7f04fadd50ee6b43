using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Host memory mapped into the guest (<c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c>, <c>remap_pfn_range</c>):
/// guest accesses reach the host buffer on every fault path, nothing is allocated or counted for it, and each system
/// call treats the VMA as Linux treats such a VMA.
/// </summary>
public sealed class HostMemoryTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const int Pages = 16;
    private const MapFlags SharedFixed = MapFlags.Shared | MapFlags.Fixed;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path = FaultPath.VmaLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, PoisonFreedFrames = true });

    private static ulong MapHost(AddressSpace space, HostBuffer buffer, Protection protection = Protection.ReadWrite, ulong at = Base) =>
        space.MapHostMemory(at, (ulong)buffer.Length, protection, SharedFixed, buffer.Address);

    [Theory]
    [MemberData(nameof(Paths))]
    public void GuestLoadsAndStoresReachTheHostBufferOnEveryPath(FaultPath path)
    {
        using var buffer = new HostBuffer(Pages);
        using AddressSpace space = NewSpace(path);
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        for (int i = 0; i < Pages; i++)
        {
            cpu.Store(a + (ulong)i * Page + 8, 1000L + i);
        }
        for (int i = 0; i < Pages; i++)
        {
            Assert.Equal(1000L + i, buffer[i * (int)Page + 8]);
            buffer[i * (int)Page + 16] = 2000L + i;
            Assert.Equal(2000L + i, cpu.Load<long>(a + (ulong)i * Page + 16));
        }
        Assert.Equal((long)Pages, Delta(before, space, HandledOnPathCounter(path)));
        // The entries name host pages, not guest frames, and count in no RSS.
        Assert.True(HostWindow.Contains(Paging.Pte.Frame(space.Descriptor.PageTable.Lookup(a, space.Descriptor.Probes))));
        Assert.Equal(0L, space.ResidentPages);
        Assert.Equal(0L, Delta(before, space, "anon_fault"));
        Assert.True(space.IsResident(a));
    }

    [Fact]
    public void BulkCopiesCrossHostPages()
    {
        using var buffer = new HostBuffer(4);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        byte[] pattern = Enumerable.Range(0, 3 * (int)Page).Select(i => (byte)(i * 7)).ToArray();

        cpu.Write(a + 100, pattern);
        Assert.True(buffer.Span.Slice(100, pattern.Length).SequenceEqual(pattern));
        buffer.Span[5000] = 0xEE;
        byte[] back = new byte[pattern.Length];
        cpu.Read(a + 100, back);
        Assert.Equal(0xEE, back[4900]);
    }

    [Fact]
    public void ProtectionChangesApplyToTheHostPages()
    {
        using var buffer = new HostBuffer(4);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        buffer[0] = 5;
        Assert.Equal(5L, cpu.Load<long>(a));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a, 6L));

        space.Protect(a, 4 * Page, Protection.ReadWrite);
        // Upgraded in place (the VMA is shared and wants no write notification): the store takes no fault.
        Assert.NotEqual(0UL, space.Descriptor.PageTable.Lookup(a, space.Descriptor.Probes) & Paging.Pte.Writable);
        Dictionary<string, long> before = Counters(space);
        cpu.Store(a, 6L);
        Assert.Equal(0L, Delta(before, space, "pgfault"));
        Assert.Equal(6L, buffer[0]);
        space.Protect(a, Page, Protection.None);
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryLoad(a, out long _));
        Assert.Equal(6L, buffer[0]);
        // Split in three, and never merged back (VM_SPECIAL).
        space.Protect(a, Page, Protection.ReadWrite);
        Assert.Equal(2, space.MapCount);
        Assert.Equal(6L, cpu.Load<long>(a));
    }

    [Fact]
    public void PartialUnmapKeepsEachPieceOnItsOwnHostPages()
    {
        using var buffer = new HostBuffer(8);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        for (int i = 0; i < 8; i++)
        {
            buffer[i * (int)Page] = 100 + i;
        }
        space.Unmap(a + 3 * Page, 2 * Page);
        Assert.Equal(2, space.MapCount);
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a + 3 * Page, out long _));
        Assert.Equal(102L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(105L, cpu.Load<long>(a + 5 * Page));
        Assert.Equal(107L, cpu.Load<long>(a + 7 * Page));
    }

    [Fact]
    public void AfterUnmapTheBufferIsUnreachableAndNothingIsFreed()
    {
        using var buffer = new HostBuffer(4);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(a + Page, 2L);
        int framesMapped = space.FramesInUse;

        // Only page tables go back: the host pages were never guest frames.
        space.Unmap(a, 4 * Page);
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(a, 9L));
        Assert.Equal(1L, buffer[0]);
        Assert.Equal(2L, buffer[(int)Page]);
        Assert.InRange(framesMapped - space.FramesInUse, 0, 3);
        Assert.Equal(0L, space.PoisonViolations);
    }

    [Fact]
    public void AChildOfForkMapsTheSameHostMemory()
    {
        using var buffer = new HostBuffer(4);
        using AddressSpace parent = NewSpace();
        ulong a = MapHost(parent, buffer);
        using Cpu parentCpu = parent.AttachCpu();
        parentCpu.Store(a, 1L);

        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.True(child.IsResident(a), "fork copies the host entries (vma_needs_copy: VM_PFNMAP)");
        Assert.Equal(1L, childCpu.Load<long>(a));
        childCpu.Store(a + Page, 2L);
        Assert.Equal(2L, buffer[(int)Page]);
        Assert.Equal(2L, parentCpu.Load<long>(a + Page));
        parentCpu.Store(a, 3L);
        Assert.Equal(3L, childCpu.Load<long>(a));
        Assert.Empty(parent.GetPageMappings(a));
    }

    [Fact]
    public void RemapMovesAndShrinksButNeverGrows()
    {
        using var buffer = new HostBuffer(8);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer, at: Base);
        using Cpu cpu = space.AttachCpu();
        buffer[2 * (int)Page] = 42;

        Assert.Equal(Errno.EFAULT, space.TryRemap(a, 8 * Page, 9 * Page, RemapFlags.MayMove, 0, out _));
        ulong moved = space.Remap(a, 8 * Page, 8 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 0x100_0000);
        Assert.Equal(42L, cpu.Load<long>(moved + 2 * Page));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(a, out long _));
        Assert.Equal(moved, space.Remap(moved, 8 * Page, 4 * Page));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryLoad(moved + 5 * Page, out long _));
        Assert.Equal(42L, cpu.Load<long>(moved + 2 * Page));
    }

    [Fact]
    public void AdviceThatDropsPagesIsRefusedAndLockingSkipsIt()
    {
        using var buffer = new HostBuffer(4);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 7L);

        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.DontNeed));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.DontNeedLocked));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.Free));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.PageOut));
        Assert.Equal(Errno.EFAULT, space.TryAdvise(a, Page, Advice.PopulateWrite));
        Assert.Equal(7L, cpu.Load<long>(a));

        Assert.Equal(Errno.None, space.Lock(a, 4 * Page));
        Assert.Equal(0L, space.LockedPages);
        Assert.Equal(1, space.MapCount);
        Assert.Equal(Errno.None, space.LockAll(LockAllFlags.Current | LockAllFlags.Future));
        ulong b = MapHost(space, buffer, at: Base + 0x100_0000);
        Assert.Equal(0L, space.LockedPages);
        Assert.DoesNotContain(" lo", space.GetSmaps());
        Assert.Equal(7L, cpu.Load<long>(b));
    }

    [Fact]
    public void PopulateLeavesHostMemoryToItsFaults()
    {
        using var buffer = new HostBuffer(2);
        using AddressSpace space = NewSpace();
        ulong a = space.MapHostMemory(Base, (ulong)buffer.Length, Protection.ReadWrite, SharedFixed | MapFlags.Populate, buffer.Address);
        Assert.False(space.IsResident(a), "__mm_populate skips VM_IO | VM_PFNMAP");
        using Cpu cpu = space.AttachCpu();
        buffer[(int)Page] = 3;
        Assert.Equal(3L, cpu.Load<long>(a + Page));
        Assert.True(space.IsResident(a + Page));
    }

    [Fact]
    public void SmapsShowsTheDriverFlagsAndNoRss()
    {
        using var buffer = new HostBuffer(2);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        string smaps = space.GetSmaps();
        Assert.Contains("VmFlags: rd wr sh mr mw me ms pf io de dd", smaps);
        Assert.Contains("[host]", space.GetMaps());
        Assert.Equal(0L, space.CountResidentPages(a, a + 2 * Page));
    }

    [Fact]
    public void BadRequestsAreEinvalAndChangeNothing()
    {
        using var buffer = new HostBuffer(2);
        using AddressSpace space = NewSpace();
        ulong length = (ulong)buffer.Length;
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, buffer.Address, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, length, Protection.ReadWrite, SharedFixed | MapFlags.Anonymous, buffer.Address, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, length, Protection.ReadWrite, SharedFixed, 0, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, length, Protection.ReadWrite, SharedFixed, buffer.Address + 8, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, 0, Protection.ReadWrite, SharedFixed, buffer.Address, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base, length, Protection.ReadWrite, SharedFixed, unchecked((nint)(1L << 51)), out _));
        Assert.Equal(Errno.EINVAL, space.TryMapHostMemory(Base + 8, length, Protection.ReadWrite, SharedFixed, buffer.Address, out _));
        Assert.Equal(0, space.MapCount);
    }

    [Fact]
    public void PinningHostMemoryIsEfault()
    {
        using var buffer = new HostBuffer(2);
        using AddressSpace space = NewSpace();
        ulong a = MapHost(space, buffer);
        Assert.Equal(Errno.EFAULT, space.TryPin(a, Page, write: false, out PinnedPages? pinned));
        Assert.Null(pinned);
    }

    [Fact]
    public unsafe void TheWindowNamesHostPagesAboveEveryArenaFrame()
    {
        Assert.True(HostWindow.FirstFrame > int.MaxValue);
        long pfn = HostWindow.FrameOf(unchecked((nint)0x7f00_1234_5000));
        Assert.True(HostWindow.Contains(pfn));
        Assert.Equal(0x7f00_1234_5000L, (long)(nint)HostWindow.Address(pfn));
        Assert.Equal(pfn, Paging.Pte.Frame(Paging.Pte.MakeLeaf(pfn, new Paging.PageProtection(true, true, false), true, true)));
    }
}
