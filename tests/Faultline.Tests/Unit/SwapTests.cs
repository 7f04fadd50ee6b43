using Faultline.Backing;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Swap and reclaim through the public surface: MADV_PAGEOUT and MADV_COLD, swap-in on the three fault paths, direct
/// reclaim instead of an out-of-memory failure, fork's shared entries, munmap giving slots back, MADV_FREE pages
/// discarded, pinned pages kept, smaps and the swap figures.
/// </summary>
public sealed class SwapTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;

    public static TheoryData<FaultPath, SwapAreaKind> PathsAndAreas
    {
        get
        {
            var data = new TheoryData<FaultPath, SwapAreaKind>();
            foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
            {
                data.Add(path, SwapAreaKind.Compressed);
                data.Add(path, SwapAreaKind.File);
            }
            return data;
        }
    }

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock, long ramBytes = 16 << 20,
        SwapAreaKind kind = SwapAreaKind.Compressed, long swapBytes = 64 << 20, bool background = false) =>
        new(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = ramBytes,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { Kind = kind, SizeBytes = swapBytes, BackgroundReclaim = background },
        });

    private static long Stamp(ulong address) => (long)(address * 2654435761UL) ^ 0x5A5A;

    private static void Fill(Cpu cpu, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            ulong page = start + (ulong)i * Page;
            cpu.Store(page, Stamp(page));
            cpu.Store(page + Page - 8, ~Stamp(page));
        }
    }

    private static void Verify(Cpu cpu, ulong start, int pages)
    {
        for (int i = 0; i < pages; i++)
        {
            ulong page = start + (ulong)i * Page;
            Assert.Equal(Stamp(page), cpu.Load<long>(page));
            Assert.Equal(~Stamp(page), cpu.Load<long>(page + Page - 8));
        }
    }

    [Fact]
    public void SwapEntriesRoundTripAndLeaveEveryPresentBitClear()
    {
        foreach ((int type, long offset) in new[] { (0, 1L), (3, 12345L), (SwapEntry.MaxSwapFiles - 1, SwapEntry.MaxOffset), (SwapEntry.PteMarker, 7L) })
        {
            ulong pte = new SwapEntry(type, offset).ToPte() | Pte.SwapFlags;
            Assert.True(Pte.IsSwap(pte));
            Assert.False(Pte.MapsFrame(pte));
            Assert.Equal(new SwapEntry(type, offset), SwapEntry.FromPte(pte));
            // Nothing a walker tests on a present entry reads set in a swap entry.
            Assert.Equal(0UL, pte & (Pte.Accessed | Pte.Dirty | Pte.Huge | Pte.Special | Pte.UffdWp | Pte.SoftDirty
                | Pte.WriteTracked | Pte.WriteWatched | Pte.NoExecute));
        }
        Assert.Equal(23, SwapEntry.MaxSwapFiles);
        Assert.True(new SwapEntry(SwapEntry.PteMarker, 1).IsNonSwap);
        Assert.True(new SwapEntry(SwapEntry.HwPoison, 1).IsNonSwap);
        Assert.False(new SwapEntry(SwapEntry.MaxSwapFiles - 1, 1).IsNonSwap);
        Assert.Equal(31, SwapEntry.PteMarker);
    }

    [Fact]
    public void AreasGiveBackWhatWasWritten()
    {
        string path = Path.Combine(Path.GetTempPath(), $"faultline-swap-test-{Guid.NewGuid():N}");
        using ISwapArea file = new FileSwapArea(path, 8);
        using var zram = new CompressedSwapArea(8);
        var random = new Random(7);
        byte[] noise = new byte[Page];
        random.NextBytes(noise);
        byte[] text = new byte[Page];
        for (int i = 0; i < text.Length; i++)
        {
            text[i] = (byte)"faultline "[i % 10];
        }
        byte[] same = Enumerable.Repeat((byte)0xAB, (int)Page).ToArray();
        byte[] read = new byte[Page];
        foreach (ISwapArea area in new ISwapArea[] { file, zram })
        {
            Assert.True(area.TryWrite(1, noise));
            Assert.True(area.TryWrite(2, text));
            Assert.True(area.TryWrite(3, same));
            area.Read(1, read);
            Assert.Equal(noise, read);
            area.Read(2, read);
            Assert.Equal(text, read);
            area.Read(3, read);
            Assert.Equal(same, read);
        }
        // zram keeps text compressed and a same-filled page as one byte.
        Assert.True(zram.StoredBytes < (long)(2 * Page + Page / 4), $"{zram.StoredBytes} bytes stored");
        zram.Discard(2);
        Assert.True(zram.StoredBytes <= (long)Page);
        Assert.True(File.Exists(path));
        file.Dispose();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void SlotsAreCountedAndFreedWithTheirLastUser()
    {
        var device = new SwapDevice(0, new CompressedSwapArea(4));
        Assert.Equal(3, device.FreeSlots);
        Assert.True(device.TryAllocate(out long a));
        Assert.True(device.TryAllocate(out long b));
        Assert.True(device.TryAllocate(out long c));
        Assert.False(device.TryAllocate(out _));
        Assert.Equal(new[] { 1L, 2L, 3L }, new[] { a, b, c }.Order());
        Assert.True(device.IsCached(a));
        device.Duplicate(a);
        device.Duplicate(a);
        Assert.Equal(2, device.UseCount(a));
        // The cache claim keeps the slot while no entry references it; the last of both frees it.
        device.ReleaseCache(a);
        Assert.Equal(0, device.FreeSlots);
        Assert.Equal(1, device.Release(a));
        Assert.Equal(0, device.Release(a));
        Assert.Equal(1, device.FreeSlots);
        Assert.False(device.TryClaimCache(a));
        Assert.True(device.TryAllocate(out long again));
        Assert.Equal(a, again);
    }

    [Theory]
    [MemberData(nameof(PathsAndAreas))]
    public void PagedOutPagesComeBackOnEveryPath(FaultPath path, SwapAreaKind kind)
    {
        using AddressSpace space = NewSpace(path, kind: kind);
        ulong a = space.Map(Base, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        Fill(cpu, a, 64);
        space.Advise(a, 64 * Page, Advice.PageOut);

        Assert.Equal(0, space.CountResidentPages(a, a + 64 * Page));
        Assert.Equal(0, space.ResidentPages);
        Assert.Contains("Swap:                256 kB", space.GetSmaps());
        Assert.Contains("SwapPss:             256 kB", space.GetSmaps());
        Assert.Equal(64, space.GetCounters()[VmCounters.SwapOut]);
        Assert.Equal(space.SwapTotalBytes - 64 * (long)Page, space.SwapFreeBytes);

        Verify(cpu, a, 64);
        Assert.Equal(64, space.GetCounters()[VmCounters.SwapIn]);
        Assert.Equal(64, space.ResidentPages);
        Assert.Contains("Swap:                  0 kB", space.GetSmaps());
        // Every entry had one user: its slot went back when the page came in.
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
        Assert.Equal(0, space.SwapCachedBytes);
        Assert.Equal(0, space.PoisonViolations);
    }

    [Fact]
    public void AWriteFaultOnASwappedOutPageMapsItWritableAtOnce()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 4);
        space.Advise(a, 4 * Page, Advice.PageOut);
        long wpBefore = space.GetCounters()[VmCounters.WriteProtectFault];
        cpu.Store(a + 8, 99L);
        Assert.Equal(wpBefore, space.GetCounters()[VmCounters.WriteProtectFault]);
        Assert.Equal(Stamp(a), cpu.Load<long>(a));
        Assert.Equal(99L, cpu.Load<long>(a + 8));
    }

    [Fact]
    public void DirectReclaimLetsAWorkingSetTwiceTheRamFit()
    {
        // 4 MiB of RAM, 8 MiB touched: without swap the fault would fail with GuestOutOfMemoryException.
        using AddressSpace space = NewSpace(ramBytes: 4 << 20, swapBytes: 32 << 20);
        const int pages = 2048;
        ulong a = space.Map(0, pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, pages);
        Verify(cpu, a, pages);
        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        Assert.True(counters[VmCounters.AllocStall] > 0);
        Assert.True(counters[VmCounters.StealDirect] > 0);
        Assert.True(counters[VmCounters.SwapIn] > 0);
        Assert.Equal(0, counters[VmCounters.OutOfMemory]);
        Assert.Equal(0, space.PoisonViolations);
    }

    [Fact]
    public void WithoutSwapGuestRamIsStillAHardWall()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20 });
        ulong a = space.Map(0, 512 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        Assert.Throws<GuestOutOfMemoryException>(() => Fill(cpu, a, 512));
        Assert.Equal(0, space.SwapTotalBytes);
    }

    [Fact]
    public void TheBackgroundReclaimerFreesFramesBetweenTheWatermarks()
    {
        // 1024 frames; below 256 free the reclaimer wakes and works until 512 are free. 900 pages never exhaust RAM, so
        // no fault needs direct reclaim: whatever was reclaimed, the background reclaimer did.
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 4 << 20,
            PoisonFreedFrames = true,
            Swap = new SwapOptions { SizeBytes = 32 << 20, LowWatermarkPages = 256, HighWatermarkPages = 512 },
        });
        const int pages = 900;
        ulong a = space.Map(0, pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, pages);
        ThreadRole.WaitUntil(() => space.FramesInUse <= 1024 - 512, "kswapd reached the high watermark", 30_000);
        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        Assert.True(counters[VmCounters.KswapdRun] > 0);
        Assert.True(counters[VmCounters.StealKswapd] > 0);
        Assert.Equal(0, counters[VmCounters.AllocStall]);
        Assert.True(counters[VmCounters.ScanKswapd] >= counters[VmCounters.StealKswapd]);
        Verify(cpu, a, pages);
    }

    [Fact]
    public void ForkSharesSwapEntriesAndEachSideKeepsItsOwnWrites()
    {
        using AddressSpace parent = NewSpace();
        ulong a = parent.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = parent.AttachCpu();
        Fill(cpu, a, 8);
        parent.Advise(a, 8 * Page, Advice.PageOut);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        // One slot per page, referenced from both address spaces (SwapPss halves).
        Assert.Contains("SwapPss:              16 kB", child.GetSmaps());
        Assert.Equal(parent.SwapTotalBytes - 8 * (long)Page, parent.SwapFreeBytes);

        Verify(childCpu, a, 8);
        childCpu.Store(a, 1L);
        cpu.Store(a + Page, 2L);
        Assert.Equal(Stamp(a), cpu.Load<long>(a));
        Assert.Equal(1L, childCpu.Load<long>(a));
        Assert.Equal(Stamp(a + Page), childCpu.Load<long>(a + Page));
        Assert.Equal(2L, cpu.Load<long>(a + Page));
        Verify(cpu, a + 2 * Page, 6);

        // Shared pages go out again through both mappings and come back to each.
        parent.Advise(a, 8 * Page, Advice.PageOut);
        child.Advise(a, 8 * Page, Advice.PageOut);
        Verify(cpu, a + 2 * Page, 6);
        Verify(childCpu, a + 2 * Page, 6);
        child.Dispose();
        parent.Unmap(a, 8 * Page);
        Assert.Equal(parent.SwapTotalBytes, parent.SwapFreeBytes);
    }

    [Fact]
    public void UnmapAndDontNeedGiveSlotsBack()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 16);
        space.Advise(a, 16 * Page, Advice.PageOut);
        space.Advise(a, 8 * Page, Advice.DontNeed);
        Assert.Equal(space.SwapTotalBytes - 8 * (long)Page, space.SwapFreeBytes);
        Assert.Equal(0L, cpu.Load<long>(a));
        space.Unmap(a, 16 * Page);
        Assert.Equal(space.SwapTotalBytes, space.SwapFreeBytes);
    }

    [Fact]
    public void CleanLazyFreePagesAreDiscardedAndWrittenOnesKept()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 4);
        space.Advise(a, 4 * Page, Advice.Free);
        cpu.Store(a + Page, 5L);
        space.Advise(a, 4 * Page, Advice.PageOut);
        Assert.Equal(3, space.GetCounters()[VmCounters.LazyFreed]);
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.Equal(5L, cpu.Load<long>(a + Page));
        Assert.Equal(0L, cpu.Load<long>(a + 2 * Page));
    }

    [Fact]
    public void PinnedPagesStayResident()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 2);
        using (PinnedPages pinned = space.Pin(a, Page, write: true))
        {
            space.Advise(a, 2 * Page, Advice.PageOut);
            Assert.True(space.IsResident(a));
            Assert.False(space.IsResident(a + Page));
        }
        Verify(cpu, a, 2);
    }

    [Fact]
    public void LockedPagesStayResidentUnderPressure()
    {
        using AddressSpace space = NewSpace(ramBytes: 4 << 20, swapBytes: 32 << 20);
        ulong locked = space.Map(Base, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.None, space.Lock(locked, 64 * Page));
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, locked, 64);
        ulong other = space.Map(0, 1536 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        Fill(cpu, other, 1536);
        Assert.True(space.GetCounters()[VmCounters.StealDirect] > 0);
        Assert.Equal(64, space.CountResidentPages(locked, locked + 64 * Page));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(locked, Page, Advice.PageOut));
        Verify(cpu, locked, 64);
        Verify(cpu, other, 1536);
    }

    [Fact]
    public void ColdPagesAreReclaimedBeforeHotOnes()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8);
        // The newest four go cold; the oldest four, first in line on the inactive list, were referenced.
        space.Advise(a + 4 * Page, 4 * Page, Advice.Cold);
        Assert.Contains("Referenced:           16 kB", space.GetSmaps());
        Assert.Equal(4, Mm.PageReclaim.Shrink(space.Descriptor.Node!, 4, direct: true));
        Assert.Equal(4, space.CountResidentPages(a, a + 4 * Page));
        Assert.Equal(0, space.CountResidentPages(a + 4 * Page, a + 8 * Page));
        Assert.Equal(4, space.GetCounters()[VmCounters.Activate]);
        Verify(cpu, a, 8);
    }

    [Fact]
    public void AFailingSwapWriterLosesNoData()
    {
        using AddressSpace space = NewSpace();
        var area = (CompressedSwapArea)space.Descriptor.Node!.Swap.Devices[0].Area;
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Fill(cpu, a, 8);
        area.FailWrite = _ => true;
        space.Advise(a, 8 * Page, Advice.PageOut);
        Assert.Equal(8, space.GetCounters()[VmCounters.SwapWriteFailed]);
        Assert.Equal(0, space.GetCounters()[VmCounters.SwapOut]);
        // The pages stay in memory (in the swap cache), dirty, and come back from there.
        Assert.Equal(8 * (long)Page, space.SwapCachedBytes);
        Verify(cpu, a, 8);
        Assert.Equal(0, space.GetCounters()[VmCounters.SwapIn]);
        area.FailWrite = null;
        space.Advise(a, 8 * Page, Advice.PageOut);
        Assert.Equal(8, space.GetCounters()[VmCounters.SwapOut]);
        Verify(cpu, a, 8);
    }

    [Fact]
    public void BadSwapOptionsAreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { Swap = new SwapOptions { SizeBytes = 4096 } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { Swap = new SwapOptions { SizeBytes = 10_000 } }));
        Assert.Throws<ArgumentOutOfRangeException>(() => new AddressSpace(new FaultlineOptions { Swap = new SwapOptions { Kind = (SwapAreaKind)7 } }));
    }
}
