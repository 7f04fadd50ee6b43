using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Fork write-protects a parent entry (<c>ptep_set_wrprotect</c>) while a Cpu's TLB fill sets its accessed and dirty
/// bits without the PTE lock. The fork read the entry before the fill and clears the write bit after it: the bits the
/// fill set must survive, or a page written after <c>MADV_FREE</c> looks clean again and could be discarded.
/// </summary>
public sealed class ForkWriteProtectRaceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void DirtyBitSetByATlbFillDuringTheCopySurvivesTheWriteProtect(FaultPath path)
    {
        using var parent = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 32 << 20,
            TransparentHugePages = TransparentHugePageMode.Never,
        });
        ulong a = MapFixed(parent, Base, Page);
        using Cpu cpu = parent.AttachCpu();
        cpu.Store(a, 1L);
        // MADV_FREE leaves the entry writable but clean and flushes it: the next store walks and sets the dirty bit.
        parent.Advise(a, Page, Advice.Free);
        MemoryDescriptor mm = parent.Descriptor;
        Assert.Equal(0UL, mm.PageTable.Lookup(a, mm.Probes) & (Pte.Dirty | Pte.Accessed));
        ThreadRunner<AddressSpace> fork;
        using (var gate = new ProbeGate(parent, ProbePoint.ForkBeforeWriteProtect, ThreadRole.Is("fork")))
        {
            fork = ThreadRole.Run("fork", parent.Fork);
            // The fork read the clean writable entry and holds its PTE lock; the store's fill needs neither.
            gate.WaitArrived();
            cpu.Store(a, 2L);
            Assert.NotEqual(0UL, mm.PageTable.Lookup(a, mm.Probes) & Pte.Dirty);
            gate.Release();
        }
        using AddressSpace child = fork.Join();

        ulong entry = mm.PageTable.Lookup(a, mm.Probes);
        Assert.Equal(0UL, entry & Pte.Writable);
        Assert.Equal(Pte.Dirty | Pte.Accessed, entry & (Pte.Dirty | Pte.Accessed));
        Assert.Equal(2L, cpu.Load<long>(a));
    }
}
