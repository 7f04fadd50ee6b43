using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// mprotect of a whole huge PMD (<c>change_huge_pmd</c>) while a Cpu's TLB fill sets its dirty bit without
/// <c>page_table_lock</c>. The mprotect read the clean PMD and computes the new one; the fill's dirty bit, set before the
/// write, must survive it, or a block written after <c>MADV_FREE</c> looks clean again and could be discarded.
/// </summary>
public sealed class ChangeHugePmdRaceTests
{
    private const ulong Base = 0x4000_0000;
    private const ulong PmdSpan = PageGeometry.PmdSize;

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void DirtyBitSetByATlbFillDuringTheChangeSurvivesIt(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });
        ulong a = MapFixed(space, Base, PmdSpan);
        space.Advise(a, PmdSpan, Advice.HugePage);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a + 8, 1L);
        // MADV_FREE of the whole block keeps it huge, writable and clean, and flushes it: the next store walks and
        // sets the dirty bit on the PMD.
        space.Advise(a, PmdSpan, Advice.Free);
        MemoryDescriptor mm = space.Descriptor;
        Assert.Equal(WalkStatus.HugePmd, mm.PageTable.WalkLockless(a, out _, out ulong clean));
        Assert.Equal(0UL, clean & Pte.Dirty);
        ThreadRunner<bool> protect;
        using (var gate = new ProbeGate(space, ProbePoint.ChangeHugePmdBeforeUpdate, ThreadRole.Is("mprotect")))
        {
            protect = ThreadRole.Run("mprotect", () =>
            {
                space.Protect(a, PmdSpan, Protection.Read);
                return true;
            });
            // The mprotect read the clean PMD and holds page_table_lock; the store's fill needs neither.
            gate.WaitArrived();
            cpu.Store(a + 8, 2L);
            Assert.NotEqual(0UL, mm.PageTable.Lookup(a, mm.Probes) & Pte.Dirty);
            gate.Release();
        }
        Assert.True(protect.Join());

        Assert.Equal(WalkStatus.HugePmd, mm.PageTable.WalkLockless(a, out _, out ulong entry));
        Assert.Equal(0UL, entry & Pte.Writable);
        Assert.Equal(Pte.Dirty | Pte.Accessed, entry & (Pte.Dirty | Pte.Accessed));
        Assert.Equal(2L, cpu.Load<long>(a + 8));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a + 8, 3L));
    }
}
