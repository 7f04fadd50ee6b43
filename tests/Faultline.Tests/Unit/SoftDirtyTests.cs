using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Soft-dirty tracking on each fault path: a new mapping reads soft-dirty (<c>VM_SOFTDIRTY</c>, smaps <c>sd</c>) until
/// <see cref="AddressSpace.ClearSoftDirty"/>; after it the first write to a page faults once, reuses the page (no
/// copy) and marks it soft-dirty; mprotect, mremap, fork, merges and brk keep or set the state as Linux does; the
/// pagemap bits follow <c>pte_to_pagemap_entry</c>.
/// </summary>
public sealed class SoftDirtyTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;
    private const ulong SoftDirtyBit = 1UL << 55;
    private const ulong ExclusiveBit = 1UL << 56;
    private const ulong FileBit = 1UL << 61;
    private const ulong PresentBit = 1UL << 63;
    private const ulong FrameBits = (1UL << 55) - 1;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path, bool softDirty = true) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20, SoftDirty = softDirty });

    private static ulong[] PageMap(AddressSpace space, ulong address, int pages, bool frames = false)
    {
        var entries = new ulong[pages];
        Assert.Equal(Errno.None, space.ReadPageMap(address, entries, frames));
        return entries;
    }

    private static bool[] SoftDirty(AddressSpace space, ulong address, int pages) =>
        PageMap(space, address, pages).Select(e => (e & SoftDirtyBit) != 0).ToArray();

    [Theory]
    [MemberData(nameof(Paths))]
    public void ANewMappingReadsSoftDirtyUntilCleared(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        MapFixed(space, Base, 4 * Page);
        cpu.Store(Base, 1L);
        Assert.Equal([true, true, true, true], SoftDirty(space, Base, 4));
        Assert.Contains(" sd ", space.GetSmaps());

        space.ClearSoftDirty();

        Assert.Equal([false, false, false, false], SoftDirty(space, Base, 4));
        Assert.DoesNotContain(" sd ", space.GetSmaps());
        Assert.Equal(1L, cpu.Load<long>(Base));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void TheFirstWriteAfterAClearFaultsOnceReusesThePageAndSetsTheBit(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        MapFixed(space, Base, 4 * Page);
        for (ulong i = 0; i < 4; i++)
        {
            cpu.Store(Base + i * Page, (long)i + 10);
        }
        ulong frameBefore = PageMap(space, Base + Page, 1, frames: true)[0] & FrameBits;
        space.ClearSoftDirty();
        var before = Counters(space);

        cpu.Store(Base + Page, 99L);
        cpu.Store(Base + Page + 8, 98L);

        Assert.Equal(1, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal(1, Delta(before, space, VmCounters.CowReuse));
        Assert.Equal(0, Delta(before, space, VmCounters.CowFault));
        Assert.Equal([false, true, false, false], SoftDirty(space, Base, 4));
        Assert.Equal(frameBefore, PageMap(space, Base + Page, 1, frames: true)[0] & FrameBits);
        Assert.Equal(99L, cpu.Load<long>(Base + Page));
        Assert.Equal(12L, cpu.Load<long>(Base + 2 * Page));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void SharedMemoryIsWriteProtectedAfterAClearAndNeverCopied(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        cpu.Store(Base, 5L);
        space.ClearSoftDirty();
        // A read fault of a page not yet mapped maps it read-only now (vma_wants_writenotify), so its write is seen.
        Assert.Equal(0L, cpu.Load<long>(Base + 2 * Page));
        ulong[] frames = PageMap(space, Base, 4, frames: true);
        var before = Counters(space);

        cpu.Store(Base, 6L);
        cpu.Store(Base + 2 * Page, 7L);

        Assert.Equal(2, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal(0, Delta(before, space, VmCounters.CowFault));
        ulong[] after = PageMap(space, Base, 4, frames: true);
        Assert.Equal(frames[0] & FrameBits, after[0] & FrameBits);
        Assert.Equal(frames[2] & FrameBits, after[2] & FrameBits);
        Assert.Equal([true, false, true, false], after.Select(e => (e & SoftDirtyBit) != 0).ToArray());
        Assert.All(new[] { after[0], after[2] }, e => Assert.Equal(PresentBit | FileBit | ExclusiveBit | SoftDirtyBit, e & ~FrameBits));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void MprotectDoesNotMakeACleanPageWritableAgain(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        MapFixed(space, Base, 2 * Page);
        cpu.Store(Base, 1L);
        cpu.Store(Base + Page, 2L);
        space.ClearSoftDirty();
        cpu.Store(Base + Page, 3L);
        space.Protect(Base, 2 * Page, Protection.Read);
        space.Protect(Base, 2 * Page, Protection.ReadWrite);
        var before = Counters(space);

        // The soft-dirty page became writable in place (can_change_pte_writable); the clean one must still fault.
        cpu.Store(Base + Page, 4L);
        Assert.Equal(0, Delta(before, space, VmCounters.WriteProtectFault));
        cpu.Store(Base, 5L);
        Assert.Equal(1, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal([true, true], SoftDirty(space, Base, 2));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AMovedPageBecomesSoftDirtyAndForkKeepsTheBits(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        MapFixed(space, Base, 3 * Page);
        for (ulong i = 0; i < 3; i++)
        {
            cpu.Store(Base + i * Page, (long)i);
        }
        space.ClearSoftDirty();
        cpu.Store(Base, 7L);

        using (AddressSpace child = space.Fork())
        {
            Assert.Equal([true, false, false], SoftDirty(child, Base, 3));
            Assert.Equal([true, false, false], SoftDirty(space, Base, 3));
            Assert.All(PageMap(space, Base, 3), e => Assert.Equal(0UL, e & ExclusiveBit));
        }

        // A move by entries (not a whole page table) marks every moved entry soft-dirty: move_soft_dirty_pte.
        ulong target = Base + 0x10_0000 + 5 * Page;
        space.Remap(Base + Page, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, target);
        Assert.Equal([true], SoftDirty(space, target, 1));
        Assert.Equal([true, false, false], SoftDirty(space, Base, 3));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AMergeKeepsVmSoftDirtyAndBrkSetsIt(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        MapFixed(space, Base, 2 * Page);
        space.ClearSoftDirty();
        Assert.Equal([false, false], SoftDirty(space, Base, 2));

        // The new neighbour merges (the flags differ only in VM_SOFTDIRTY), and the merged VMA reads soft-dirty.
        MapFixed(space, Base + 2 * Page, 2 * Page);
        Assert.Equal(1, space.MapCount);
        Assert.Equal([true, true, true, true], SoftDirty(space, Base, 4));

        ulong heap = space.Brk(0);
        space.Brk(heap + Page);
        space.ClearSoftDirty();
        space.Brk(heap + 2 * Page);
        Assert.Equal([true, true], SoftDirty(space, heap, 2));
    }

    [Fact]
    public void WithoutSoftDirtySupportNothingReadsSoftDirty()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock, softDirty: false);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 2 * Page);
        cpu.Store(Base, 1L);
        space.ClearSoftDirty();
        var before = Counters(space);
        cpu.Store(Base, 2L);

        Assert.Equal(0, Delta(before, space, VmCounters.WriteProtectFault));
        Assert.Equal([false, false], SoftDirty(space, Base, 2));
        Assert.DoesNotContain(" sd ", space.GetSmaps());
    }

    [Fact]
    public void PageMapReportsPresenceExclusivityAndFramesOnlyWhenAsked()
    {
        using AddressSpace space = NewSpace(FaultPath.MmapLock, softDirty: false);
        using Cpu cpu = space.AttachCpu();
        MapFixed(space, Base, 3 * Page);
        cpu.Store(Base, 1L);
        _ = cpu.Load<long>(Base + Page);

        ulong[] plain = PageMap(space, Base - Page, 5);
        Assert.Equal(0UL, plain[0]);
        Assert.Equal(PresentBit | ExclusiveBit, plain[1]);
        // The zero page: present, neither exclusive nor a file page (vm_normal_page finds no page).
        Assert.Equal(PresentBit, plain[2]);
        Assert.Equal(0UL, plain[3]);
        Assert.NotEqual(0UL, PageMap(space, Base, 1, frames: true)[0] & FrameBits);
        Assert.Equal(Errno.EINVAL, space.ReadPageMap(Base + 1, new ulong[1]));
    }
}
