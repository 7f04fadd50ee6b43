using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Reclaim's batched TLB flush (<c>TTU_BATCH_FLUSH</c>): every page of a batch is unmapped first and one grace period
/// covers them all before any is paged out. A Cpu whose read scope still holds writable translations of the batch's
/// pages keeps writing through them after their PTEs became swap entries; the grace period waits for the scope, and
/// the page-out that follows must write what those stores left, for the first page of the batch as for the last (a
/// page written out before the flush would be marked clean and later dropped with its old contents).
/// </summary>
public sealed class ReclaimBatchRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const int Pages = 4;
    private const string Reclaimer = "reclaimer";

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void StoresThroughAStaleTranslationBeforeTheBatchFlushAreWrittenOut(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 16 << 20,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { SizeBytes = 16 << 20, BackgroundReclaim = false, PageCluster = 0 },
        });
        ulong a = space.Map(Base, Pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        long gracePeriods = space.GetCounters()[VmCounters.GracePeriod];

        using var threads = new ThreadScope();
        ThreadRunner<bool> pageOut;
        using (CpuScope scope = cpu.EnterScope())
        {
            for (ulong i = 0; i < Pages; i++)
            {
                scope.Store(a + i * Page, (long)i);
            }
            pageOut = threads.Run(Reclaimer, () => space.TryAdvise(a, Pages * Page, Advice.PageOut) == Errno.None);
            // The batch unmaps every page, then its grace period waits for this scope.
            SpinWait.SpinUntil(() => !space.IsResident(a + (Pages - 1) * Page));
            Assert.False(space.IsResident(a));
            for (ulong i = 0; i < Pages; i++)
            {
                scope.Store(a + i * Page, (long)i + 1000);
            }
        }
        Assert.True(pageOut.Join());

        Assert.Equal(1, space.GetCounters()[VmCounters.GracePeriod] - gracePeriods);
        Assert.Equal(Pages, space.GetCounters()[VmCounters.SwapOut]);
        // Whatever stayed in memory goes now: a page written out before those stores, and marked clean, would be
        // dropped here with its old contents in the slot.
        Mm.PageReclaim.Shrink(space.Descriptor.Node!, Pages, direct: true);
        for (ulong i = 0; i < Pages; i++)
        {
            Assert.Equal((long)i + 1000, other.Load<long>(a + i * Page));
        }
        Assert.Equal(0, space.PoisonViolations);
    }
}
