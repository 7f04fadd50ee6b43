using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Swap readahead against a writer that frees the entry it is reading: the readahead of a fault is stopped after it
/// claimed a neighbour's slot and read it, before the frame joins the swap cache; <c>MADV_DONTNEED</c> of that
/// neighbour (under the mmap read lock, beside the fault) drops the last entry naming the slot and finds no cached frame
/// to free. When the readahead resumes it must notice the slot has no user left and drop the frame, or the slot and the
/// frame would stay taken until reclaim happened to find them.
/// </summary>
public sealed class SwapReadaheadRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const int Pages = 8;
    private const string Faulter = "faulter";

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void AnEntryFreedWhileItsPageIsReadAheadGivesTheSlotBack(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 16 << 20,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { SizeBytes = 16 << 20, BackgroundReclaim = false },
        });
        ulong a = space.Map(Base, Pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        for (ulong i = 0; i < Pages; i++)
        {
            cpu.Store(a + i * Page, (long)i + 100);
        }
        space.Advise(a, Pages * Page, Advice.PageOut);
        // The first fault has nothing to judge by and reads one page; the next, adjacent one opens a window of two and
        // reads page 2 ahead of the sweep.
        Assert.Equal(100L, cpu.Load<long>(a));
        Assert.Equal(0, space.GetCounters()[VmCounters.SwapReadahead]);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.SwapReadaheadBeforeInsert, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.Load<long>(a + Page));
        gate.WaitArrived();
        space.Advise(a + 2 * Page, Page, Advice.DontNeed);
        gate.Release();

        Assert.Equal(101L, fault.Join());
        Assert.Equal(1, space.GetCounters()[VmCounters.SwapReadahead]);
        // Pages 3 to 7 are still swapped out; page 2's slot and its read-ahead frame are gone.
        Assert.Equal(space.SwapTotalBytes - (Pages - 3) * (long)Page, space.SwapFreeBytes);
        Assert.Equal(0, space.SwapCachedBytes);
        Assert.Equal(0L, cpu.Load<long>(a + 2 * Page));
        Assert.Equal(103L, cpu.Load<long>(a + 3 * Page));
    }
}
