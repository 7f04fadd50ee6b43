using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Background zeroing: freed frames are cleared by a worker ahead of demand, so first-touch faults find them zeroed;
/// a fault that finds none clears its own; no fresh page ever shows old data; allocation never fails while the worker
/// holds the last free frames; and the arena is released safely while the worker runs.
/// </summary>
public sealed class BackgroundZeroingTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(long bytes = 16 << 20) =>
        new(new FaultlineOptions { FaultPath = FaultPath.Speculative, PhysicalMemoryBytes = bytes, BackgroundZeroing = true });

    private static void WriteAll(Cpu cpu, ulong start, int pages, long value)
    {
        for (int i = 0; i < pages; i++)
        {
            for (ulong word = 0; word < Page; word += 512)
            {
                cpu.Store(start + (ulong)i * Page + word, value);
            }
        }
    }

    private static void AssertZero(Cpu cpu, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            for (ulong word = 0; word < Page; word += 512)
            {
                Assert.Equal(0L, cpu.Load<long>(start + (ulong)i * Page + word));
            }
        }
    }

    [Fact]
    public void FreedFramesAreClearedAheadOfTheNextFirstTouch()
    {
        using var space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        const int Pages = 256;
        ulong a = MapFixed(space, Base, Pages * Page);
        WriteAll(cpu, a, Pages, -1);
        space.Unmap(a, Pages * Page);
        ThreadRole.WaitUntil(() => space.Descriptor.Memory.FramesZeroedInBackground >= Pages, "the worker to clear the freed frames");
        long onDemand = space.Descriptor.Memory.FramesZeroedOnDemand;

        a = MapFixed(space, Base, Pages * Page);
        WriteAll(cpu, a, Pages, 0);
        AssertZero(cpu, a, Pages);

        Assert.Equal(onDemand, space.Descriptor.Memory.FramesZeroedOnDemand);
        Assert.True(space.Descriptor.Memory.ZeroesInBackground);
    }

    [Fact]
    public void APageReusedBeforeTheWorkerGotToItIsStillZero()
    {
        using var space = NewSpace();
        using Cpu cpu = space.AttachCpu();
        const int Pages = 512;
        for (int round = 0; round < 8; round++)
        {
            ulong a = MapFixed(space, Base, Pages * Page);
            for (int i = 0; i < Pages; i++)
            {
                // A read first: the frame must read zero whether the worker or this fault cleared it.
                Assert.Equal(0L, cpu.Load<long>(a + (ulong)i * Page + 8));
                cpu.Store(a + (ulong)i * Page + 8, round + 1L);
            }
            space.Unmap(a, Pages * Page);
        }
    }

    [Fact]
    public void AllocationWaitsForFramesTheWorkerHoldsInsteadOfFailing()
    {
        // Guest RAM barely larger than the region: once unmapped, nearly every free frame is waiting to be cleared.
        using var space = NewSpace(80 * (long)Page);
        using Cpu cpu = space.AttachCpu();
        const int Pages = 60;
        for (int round = 0; round < 20; round++)
        {
            ulong a = MapFixed(space, Base, Pages * Page);
            WriteAll(cpu, a, Pages, round + 1);
            space.Unmap(a, Pages * Page);
        }
    }

    [Fact]
    public void DisposingWhileTheWorkerRunsIsSafe()
    {
        for (int round = 0; round < 20; round++)
        {
            var space = NewSpace(32 << 20);
            using (Cpu cpu = space.AttachCpu())
            {
                ulong a = MapFixed(space, Base, 2048 * Page);
                WriteAll(cpu, a, 2048, 7);
                space.Unmap(a, 2048 * Page);
            }
            space.Dispose();
        }
    }
}
