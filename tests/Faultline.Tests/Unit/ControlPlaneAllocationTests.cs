using Faultline.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Unit;

/// <summary>
/// The control plane allocates no managed memory per call once warm: map/unmap, an mprotect split and merge,
/// MADV_DONTNEED and brk reuse tree nodes, VMAs, gathers and scratch lists. Counted on the calling thread with
/// <see cref="GC.GetAllocatedBytesForCurrentThread"/> around the calls only. Run alone: beside other tests that
/// allocate heavily, a few hundred bytes per thousand calls were counted now and then (cause not yet found; a second
/// thread allocating in a loop reproduced it once in five runs), which a quiet process never showed.
/// </summary>
[Collection(ProcessWideStateCollection.Name)]
public sealed class ControlPlaneAllocationTests(ITestOutputHelper output)
{
    private const ulong Page = PageGeometry.PageSize;
    private const int WarmUp = 200;
    private const int Iterations = 1000;
    private const int Rounds = 3;

    [Fact]
    public void MapAndUnmapOfAnUntouchedRegionAllocateNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        space.Map(0, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        AssertNoAllocation("map+unmap", _ =>
        {
            ulong a = space.Map(0, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            space.Unmap(a, 16 * Page);
        });
    }

    [Fact]
    public void MapTouchAndUnmapAllocateNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using Cpu cpu = space.AttachCpu();
        AssertNoAllocation("map+unmap of a touched page", meter =>
        {
            ulong a = space.Map(0, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            meter.Pause();
            cpu.Store(a + Page, 7L);
            meter.Resume();
            space.Unmap(a, 16 * Page);
        });
    }

    [Fact]
    public void ProtectSplitAndMergeBackAllocateNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0, 256 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Populate);
        ulong page = a + 128 * Page;
        AssertNoAllocation("protect pair", _ =>
        {
            space.Protect(page, Page, Protection.Read);
            space.Protect(page, Page, Protection.ReadWrite);
        });
        Assert.Equal(1, space.MapCount);
    }

    [Fact]
    public void DontNeedOfAResidentPageAllocatesNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using Cpu cpu = space.AttachCpu();
        ulong a = space.Map(0, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        AssertNoAllocation("madvise(DONTNEED)", meter =>
        {
            meter.Pause();
            cpu.Store(a + 3 * Page, 1L);
            meter.Resume();
            space.Advise(a + 2 * Page, 8 * Page, Advice.DontNeed);
        });
        Assert.False(space.IsResident(a + 3 * Page));
    }

    [Fact]
    public void BrkGrowAndShrinkAllocateNothing()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong start = space.Brk(0);
        space.Brk(start + 4 * Page);
        AssertNoAllocation("brk grow+shrink", _ =>
        {
            space.Brk(start + 20 * Page);
            space.Brk(start + 4 * Page);
        });
        Assert.Equal(1, space.MapCount);
    }

    // Warms up, then sums the bytes `op` allocates on this thread outside the spans it pauses the meter for, in up to
    // three rounds: an allocation per call shows in every round; a one-off of a few hundred bytes, seen now and then on
    // a loaded machine and not yet explained (PERFORMANCE.md, open questions), shows in one round only.
    private void AssertNoAllocation(string name, Action<Meter> op)
    {
        var meter = new Meter();
        for (int i = 0; i < WarmUp; i++)
        {
            op(meter);
        }
        var totals = new long[Rounds];
        for (int round = 0; round < Rounds; round++)
        {
            meter.Reset();
            for (int i = 0; i < Iterations; i++)
            {
                meter.Resume();
                op(meter);
                meter.Pause();
            }
            totals[round] = meter.Total;
            output.WriteLine($"{name}, round {round + 1}: {meter.Total / (double)Iterations:F1} B per call");
            if (meter.Total == 0)
            {
                return;
            }
        }
        Assert.Fail($"{name} allocated in every round: {string.Join(", ", totals)} bytes per {Iterations} calls");
    }

    private sealed class Meter
    {
        private long _since;

        public long Total { get; private set; }

        public void Resume() => _since = GC.GetAllocatedBytesForCurrentThread();

        public void Pause() => Total += GC.GetAllocatedBytesForCurrentThread() - _since;

        public void Reset() => Total = 0;
    }
}
