using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

// The allocation count runs alone, as ControlPlaneAllocationTests' do: beside other tests it counted bytes now and then.
[Collection(ProcessWideStateCollection.Name)]
public class PlacementAndAllocationTests
{
    private const ulong Page = 4096;

    [Fact]
    public void MappingsWithoutAnAddressArePlacedTopDownBelowTheMmapBase()
    {
        var options = new FaultlineOptions { PhysicalMemoryBytes = 1 << 20, MmapBase = 0x7000_0000_0000 };
        using var space = new AddressSpace(options);
        ulong first = space.Map(0, 16 * Page, Protection.Read, MapFlags.PrivateAnonymous);
        ulong second = space.Map(0, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        Assert.Equal(options.MmapBase - 16 * Page, first);
        Assert.Equal(first - 4 * Page, second);

        // A free hint is taken (rounded down to a page); a taken one falls back to the top-down search.
        ulong hinted = space.Map(0x1234_5678_9123, Page, Protection.Read, MapFlags.PrivateAnonymous);
        Assert.Equal(0x1234_5678_9000UL, hinted);
        ulong clash = space.Map(first + Page, Page, Protection.None, MapFlags.PrivateAnonymous);
        Assert.Equal(second - Page, clash);

        // A hole left by an unmap is reused by the top-down search.
        space.Unmap(first, 16 * Page);
        Assert.Equal(options.MmapBase - 8 * Page, space.Map(0, 8 * Page, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void TlbHitsAndAnonymousFirstTouchFaultsAllocateNoManagedMemory(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20 });
        ulong a = space.Map(0, 16 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        // Warm up over several 2 MiB spans (new PTE tables too): the VMA's anon_vma, JIT of every method on the way.
        for (ulong p = a; p < a + (8 << 20); p += Page)
        {
            cpu.Store(p, 1L);
            _ = cpu.Load<long>(p);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        long sum = 0;
        for (ulong p = a + (8 << 20); p < a + (16 << 20); p += Page)
        {
            cpu.Store(p, (long)p);          // first touch: a page fault
            sum += cpu.Load<long>(p);        // TLB hit
        }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        Assert.Equal(0, allocated);
        Assert.NotEqual(0, sum);
        Assert.True(space.GetCounters()["anon_fault"] >= 4096);
    }
}
