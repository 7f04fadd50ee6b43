using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of faults on file mappings: (a) a truncate while a fault holds the file's page between its lookup
/// and the PTE lock (the page must not be mapped after the truncate, and the access ends in SIGBUS); (b) a speculative
/// fault meeting a locked or not-uptodate page answers RETRY and the mmap-lock path maps it (waiting for the read-in);
/// a VMA-lock fault on a page not cached leaves the read to the mmap-lock path; (c) msync's clean racing a store that
/// already walked to the writable entry, and a write fault that holds the page while msync runs: no store is lost, and
/// the page ends dirty whenever the host file lacks a store.
/// </summary>
public sealed class FileMappingRaceTests
{
    private const int Page = PageGeometry.PageSize;
    private const ulong Base = 0x5000_0000;
    private const string Faulter = "faulter";
    private const string Syncer = "syncer";

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_truncate_while_a_fault_holds_the_page_before_the_pte_lock_leaves_it_unmapped(FaultPath path)
    {
        // Cached, so every path takes the page without I/O and reaches the PTE lock with it.
        using var stage = new FileStage(path, 4, MapFlags.Shared, Protection.Read, cachePages: true, faultAround: false);
        ulong a = stage.Address;
        // Builds the page tables, so the stopped fault below reaches the PTE on every path.
        Assert.Equal(FileStage.ByteAt(0), stage.Cpu.Load<byte>(a));

        ThreadRunner<AccessOutcome> fault;
        using (var gate = new ProbeGate(stage.Space, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is(Faulter)))
        {
            fault = ThreadRole.Run(Faulter, () => stage.Cpu.TryLoad(a + 2 * Page, out long _));
            gate.WaitArrived();
            Assert.Equal(Errno.None, stage.File.Truncate(Page));
            gate.Release();
        }

        Assert.Equal(AccessOutcome.BusError, fault.Join());
        Assert.False(HasPte(stage.Space, a + 2 * Page), "a page cut by the truncate was mapped after it");
        Assert.Equal(1, stage.File.CachedPages);
    }

    [Fact]
    public void A_speculative_fault_on_a_locked_page_retries_and_the_mmap_lock_path_maps_it()
    {
        using var stage = new FileStage(FaultPath.Speculative, 2, MapFlags.Shared, Protection.Read, cachePages: true, faultAround: false);
        AddressSpace space = stage.Space;
        ulong a = stage.Address;
        Assert.Equal(FileStage.ByteAt(0), stage.Cpu.Load<byte>(a));
        Assert.True(stage.File.Cache.TryGetCached(1, out long pfn));
        // Writeback (or a writer) holds the page lock: __lock_page_or_retry with FAULT_FLAG_SPECULATIVE must not sleep.
        Assert.True(stage.File.Cache.TryLockPage(pfn));

        var before = Counters(space);
        Assert.Equal(FileStage.ByteAt(Page), stage.Cpu.Load<byte>(a + Page));
        Assert.Equal(0, Delta(before, space, VmCounters.SpeculativePageFault));
        Assert.Equal(1, Delta(before, space, VmCounters.SpeculativeFallback));
        Assert.Equal(1, Delta(before, space, VmCounters.MmapLockFault));
        stage.File.Cache.UnlockPage(pfn);
        space.Descriptor.Memory.Put(pfn);

        // Unlocked and uptodate: the same page faulted again is handled speculatively.
        space.Unmap(a + Page, Page);
        space.Map(a + Page, Page, Protection.Read, MapFlags.Shared | MapFlags.Fixed, stage.File, Page);
        before = Counters(space);
        Assert.Equal(FileStage.ByteAt(Page), stage.Cpu.Load<byte>(a + Page));
        Assert.Equal(1, Delta(before, space, VmCounters.SpeculativePageFault));
    }

    [Theory]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void A_lockless_fault_on_a_page_being_read_in_retries_and_the_mmap_lock_path_waits_for_the_fill(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20, FaultAroundBytes = Page });
        var store = new GatedStore(2 * Page);
        var cache = new PageCache(space.Descriptor.Memory, store);
        var file = new FileBacking(cache, "/gated", 0, 0, 1);
        ulong a = space.MapBacking(Base, 2 * Page, Protection.Read, MapFlags.Shared | MapFlags.Fixed, file, 0);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        try
        {
            using var threads = new ThreadScope();
            var reader = threads.Run("reader", () => cache.Read(0, new byte[8], out _));
            Assert.True(store.Entered.Wait(TimeSpan.FromSeconds(30)), "the read-in reached the store");
            var before = Counters(space);
            var fault = threads.Run(Faulter, () => cpu.Load<long>(a));
            string retried = path == FaultPath.Speculative ? VmCounters.SpeculativeFallback : VmCounters.VmaLockRetry;
            ThreadRole.WaitUntil(() => Delta(before, space, retried) == 1, "the lockless attempt answered RETRY");
            // The mmap-lock path found the page locked and not uptodate: it waits for the fill, never maps zeros.
            Thread.Sleep(20);
            Assert.False(fault.IsDone);

            store.Release.Set();
            Assert.Equal(Errno.None, reader.Join());
            Assert.Equal(BitConverter.ToInt64(GatedStore.Contents(0, 8)), fault.Join());
            Assert.Equal(1, store.Reads);
            Assert.Equal(0, Delta(before, space, HandledOnPathCounter(path)));
        }
        finally
        {
            space.Unmap(a, 2 * Page);
            cache.Dispose();
        }
    }

    [Fact]
    public void A_vma_lock_fault_on_a_page_not_cached_leaves_the_read_to_the_mmap_lock_path()
    {
        using var stage = new FileStage(FaultPath.VmaLock, 2, MapFlags.Shared, Protection.Read, faultAround: false);
        stage.File.Read(Page, new byte[8]);

        var before = Counters(stage.Space);
        Assert.Equal(FileStage.ByteAt(0), stage.Cpu.Load<byte>(stage.Address));
        Assert.Equal(1, Delta(before, stage.Space, VmCounters.VmaLockRetry));
        before = Counters(stage.Space);
        Assert.Equal(FileStage.ByteAt(Page), stage.Cpu.Load<byte>(stage.Address + Page));
        Assert.Equal(1, Delta(before, stage.Space, VmCounters.VmaLockSuccess));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_store_that_walked_to_the_writable_entry_before_msyncs_clean_is_written_by_that_msync(FaultPath path)
    {
        using var stage = new FileStage(path, 2, MapFlags.Shared, faultAround: false);
        ulong a = stage.Address;
        // Writable and dirty after the first store's write-notify fault.
        stage.Idle.Store(a + Page, 1L);

        using var threads = new ThreadScope();
        using var walked = new ProbeGate(stage.Space, ProbePoint.TlbMissWalked, ThreadRole.Is(Faulter));
        var store = threads.Run(Faulter, () => stage.Cpu.TryStore(a + Page, 3L));
        walked.WaitArrived();
        var sync = threads.Run(Syncer, () => stage.Space.Msync(a, 2 * Page, SyncFlags.Sync));
        // The clean write-protected the entry and waits for the grace period the stopped store holds back.
        Thread.Sleep(20);
        Assert.False(sync.IsDone);

        walked.Release();
        Assert.Equal(AccessOutcome.Ok, store.Join());
        Assert.Equal(Errno.None, sync.Join());
        Assert.Equal(3L, BitConverter.ToInt64(stage.HostBytes, Page));
        Assert.False(stage.PteWritable(a + Page));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_write_fault_holding_the_page_while_msync_runs_leaves_it_dirty_for_the_next_writeback(FaultPath path)
    {
        using var stage = new FileStage(path, 2, MapFlags.Shared, cachePages: true, faultAround: false);
        ulong a = stage.Address;
        Assert.Equal(FileStage.ByteAt(Page), stage.Cpu.Load<byte>(a + Page));

        ThreadRunner<AccessOutcome> fault;
        using (var gate = new ProbeGate(stage.Space, ProbePoint.BackingFaultBeforePteLock, ThreadRole.Is(Faulter)))
        {
            fault = ThreadRole.Run(Faulter, () => stage.Cpu.TryStore(a, 77L));
            gate.WaitArrived();
            // The page is not dirty yet: this msync has nothing of the store to write.
            Assert.Equal(Errno.None, stage.Space.Msync(a, 2 * Page, SyncFlags.Sync));
            gate.Release();
        }

        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.True(stage.File.Cache.TryGetCached(0, out long pfn));
        Assert.True(stage.Space.Descriptor.Memory.HasFlags(pfn, FrameFlags.Dirty), "the store's page is dirty after the race");
        stage.Space.Descriptor.Memory.Put(pfn);
        Assert.NotEqual(77L, BitConverter.ToInt64(stage.HostBytes, 0));
        Assert.Equal(Errno.None, stage.Space.Msync(a, 2 * Page, SyncFlags.Sync));
        Assert.Equal(77L, BitConverter.ToInt64(stage.HostBytes, 0));
    }
}
