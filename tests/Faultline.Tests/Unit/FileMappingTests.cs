using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Mappings of guest files on each fault path: mmap's errnos, shared and private semantics (stores reach the file or
/// stay private), write notification (a clean shared page of a host file is read-only until written, and again after
/// msync), SIGBUS past the end of the file, truncation unmapping every mapping (private copies too), msync and fsync
/// writing the mappings' stores to the host file, the background flusher's ratio, read-around on a cache miss as the
/// access advice says, the page
/// offset through split, merge and mremap, the maps line, and a mapping keeping a disposed file's pages.
/// </summary>
public sealed class FileMappingTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;
    private const ulong Base = 0x5000_0000;

    private readonly string _path = Path.Combine(Path.GetTempPath(), $"faultline-map-{Guid.NewGuid():N}");

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    public void Dispose() => File.Delete(_path);

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20, PoisonFreedFrames = true });

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    // A host file of `bytes` (its pattern is Pattern(bytes, 7)) opened through `space`.
    private HostFile NewHostFile(AddressSpace space, int bytes, bool writable = true)
    {
        File.WriteAllBytes(_path, Pattern(bytes, 7));
        return HostFile.Open(space, _path, writable);
    }

    private static ulong MapFile(AddressSpace space, GuestFile file, int pages, MapFlags type, long offset = 0,
        Protection protection = Protection.ReadWrite) =>
        space.Map(Base, (ulong)pages * Page, protection, type | MapFlags.Fixed, file, offset);

    [Fact]
    public void Mmap_refuses_bad_input_with_linux_errno_and_changes_nothing()
    {
        using AddressSpace space = NewSpace();
        using HostFile file = NewHostFile(space, 4 * Page);
        using HostFile readOnly = HostFile.Open(space, _path, writable: false);
        const ulong length = 2 * Page;
        Assert.Equal(Errno.EINVAL, space.TryMap(0, length, Protection.Read, MapFlags.Shared, file, 100, out _));
        Assert.Equal(Errno.EINVAL, space.TryMap(0, 0, Protection.Read, MapFlags.Shared, file, 0, out _));
        Assert.Equal(Errno.EINVAL, space.TryMap(0, length, Protection.Read, MapFlags.None, file, 0, out _));
        Assert.Equal(Errno.EINVAL, space.TryMap(0, length, Protection.Read, MapFlags.Private | MapFlags.GrowsDown, file, 0, out _));
        Assert.Equal(Errno.EINVAL, space.TryMap(0, length, Protection.Read, MapFlags.Private | MapFlags.HugeTlb, file, 0, out _));
        Assert.Equal(Errno.EOVERFLOW, space.TryMap(0, length, Protection.Read, MapFlags.Shared, file, -Page, out _));
        Assert.Equal(Errno.EOVERFLOW, space.TryMap(0, length, Protection.Read, MapFlags.Shared, file, long.MaxValue - Page + 1, out _));
        Assert.Equal(Errno.EOPNOTSUPP, space.TryMap(0, length, Protection.Read, MapFlags.SharedValidate | MapFlags.Sync, file, 0, out _));
        Assert.Equal(Errno.EOPNOTSUPP, space.TryMap(0, length, Protection.Read, MapFlags.SharedValidate | (MapFlags)0x200, file, 0, out _));
        Assert.Equal(Errno.EACCES, space.TryMap(0, length, Protection.ReadWrite, MapFlags.Shared, readOnly, 0, out _));
        Assert.Equal(0, space.MapCount);

        // MAP_SHARED drops unknown flags; a private writable mapping of a read-only file is fine.
        Assert.Equal(Errno.None, space.TryMap(0, length, Protection.Read, MapFlags.Shared | (MapFlags)0x200, file, 0, out ulong a));
        Assert.Equal(Errno.None, space.TryMap(0, length, Protection.ReadWrite, MapFlags.Private, readOnly, 0, out ulong b));
        // A shared read-only mapping of a read-only file can never be made writable.
        Assert.Equal(Errno.None, space.TryMap(0, length, Protection.Read, MapFlags.Shared, readOnly, 0, out ulong c));
        Assert.Equal(Errno.EACCES, space.TryProtect(c, length, Protection.ReadWrite));
        space.Unmap(a, length);
        space.Unmap(b, length);
        space.Unmap(c, length);

        file.Dispose();
        Assert.Equal(Errno.EBADF, space.TryMap(0, length, Protection.Read, MapFlags.Shared, file, 0, out _));
        // With MAP_ANONYMOUS the file is ignored, as Linux ignores the descriptor.
        Assert.Equal(Errno.None, space.TryMap(0, length, Protection.Read, MapFlags.PrivateAnonymous, file, 0, out ulong anonymous));
        Assert.Equal("", space.GetMappings().Single(m => m.Start == anonymous).Name);
    }

    [Fact]
    public void A_file_of_another_address_spaces_memory_is_enodev()
    {
        using AddressSpace space = NewSpace();
        using AddressSpace other = NewSpace();
        using var file = new MemoryFile(other, "x");
        file.Write(0, new byte[Page]);
        Assert.Equal(Errno.ENODEV, space.TryMap(0, Page, Protection.Read, MapFlags.Shared, file, 0, out _));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_shared_mapping_and_file_io_see_one_copy_of_each_page(FaultPath path)
    {
        using var stage = new FileStage(path, 3, MapFlags.Shared);
        ulong a = stage.Address;
        var seen = new byte[3 * Page];
        stage.Cpu.Read(a, seen);
        Assert.Equal(FileStage.Contents(3 * Page), seen);

        stage.Cpu.Store(a + Page + 8, 0x1122334455667788L);
        var back = new byte[8];
        stage.File.Read(Page + 8, back);
        Assert.Equal(0x1122334455667788L, BitConverter.ToInt64(back));
        stage.File.Write(2 * Page, BitConverter.GetBytes(42L));
        Assert.Equal(42L, stage.Cpu.Load<long>(a + 2 * Page));
        // One frame: the file's page is the mapping's.
        Assert.True(stage.File.Cache.TryGetCached(1, out long pfn));
        Assert.Equal(pfn, Paging.Pte.Frame(stage.Space.Descriptor.PageTable.Lookup(a + Page, stage.Space.Descriptor.Probes)));
        stage.Space.Descriptor.Memory.Put(pfn);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_private_mapping_copies_on_write_and_leaves_the_file_alone(FaultPath path)
    {
        using var stage = new FileStage(path, 2, MapFlags.Private);
        ulong a = stage.Address;
        Assert.Equal(BitConverter.ToInt64(FileStage.Contents(8)), stage.Cpu.Load<long>(a));
        stage.Cpu.Store(a, 7L);
        stage.Cpu.Store(a + Page, 9L);
        Assert.Equal(7L, stage.Cpu.Load<long>(a));
        var back = new byte[2 * Page];
        stage.File.Read(0, back);
        Assert.Equal(FileStage.Contents(2 * Page), back);
        PhysicalMemory memory = stage.Space.Descriptor.Memory;
        Assert.Equal(FrameKind.Anonymous, memory.Info(Paging.Pte.Frame(stage.Space.Descriptor.PageTable.Lookup(a, stage.Space.Descriptor.Probes))).Kind);
        Assert.Equal(Errno.None, stage.File.Sync());
        Assert.Equal(FileStage.Contents(2 * Page), stage.HostBytes);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Past_the_end_of_the_file_is_sigbus_and_the_page_holding_the_end_maps_with_a_zero_tail(FaultPath path)
    {
        using var stage = new FileStage(path, 2, MapFlags.Shared, fileBytes: Page + 100, mapPages: 4);
        ulong a = stage.Address;
        Cpu cpu = stage.Cpu;
        Assert.Equal(FileStage.ByteAt(Page), cpu.Load<byte>(a + Page));
        Assert.Equal(0L, cpu.Load<long>(a + Page + 200));
        Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(a + 2 * Page, out long _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryStore(a + 3 * Page, 1L));
        // A store into the tail stays out of the file: writeback stops at the end.
        cpu.Store(a + Page + 200, -1L);
        Assert.Equal(Errno.None, stage.Space.Msync(a, 4 * Page, SyncFlags.Sync));
        Assert.Equal(FileStage.Contents(Page + 100), stage.HostBytes);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void A_truncate_unmaps_the_cut_pages_from_every_mapping_private_copies_too(FaultPath path)
    {
        using var stage = new FileStage(path, 4, MapFlags.Shared);
        ulong shared = stage.Address;
        Cpu cpu = stage.Cpu;
        ulong copy = stage.Space.Map(0, 4 * Page, Protection.ReadWrite, MapFlags.Private, stage.File, 0);
        for (ulong page = 0; page < 4; page++)
        {
            Assert.NotEqual(0L, cpu.Load<long>(shared + page * Page));
            cpu.Store(copy + page * Page, (long)page + 1);
        }
        Assert.Equal(Errno.None, stage.File.Truncate(Page + 10));

        Assert.False(HasPte(stage.Space, shared + 2 * Page));
        Assert.False(HasPte(stage.Space, copy + 2 * Page));
        Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(shared + 2 * Page, out long _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(copy + 3 * Page, out long _));
        // The page holding the new end stays, its cut tail zero; the private copy there stays the copy.
        Assert.Equal(0L, cpu.Load<long>(shared + Page + 16));
        Assert.Equal(2L, cpu.Load<long>(copy + Page));
        Assert.Equal(1L, cpu.Load<long>(copy));
        Assert.Equal(Page + 10, stage.HostBytes.Length);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Shared_stores_reach_the_host_file_after_msync_and_write_notify_sees_each_first_store(FaultPath path)
    {
        using var stage = new FileStage(path, 3, MapFlags.Shared);
        ulong a = stage.Address;
        Cpu cpu = stage.Cpu;
        PhysicalMemory memory = stage.Space.Descriptor.Memory;
        byte[] expected = FileStage.Contents(3 * Page);
        Assert.Equal(BitConverter.ToInt64(expected, Page), cpu.Load<long>(a + Page));
        Assert.False(stage.PteWritable(a + Page), "a clean page of a host file maps read-only (write notification)");
        Assert.True(stage.File.Cache.TryGetCached(1, out long pfn));
        Assert.False(memory.HasFlags(pfn, FrameFlags.Dirty));

        byte[] data = Pattern(Page, 3);
        cpu.Write(a + Page, data);
        Assert.True(stage.PteWritable(a + Page));
        Assert.True(memory.HasFlags(pfn, FrameFlags.Dirty), "the first store dirtied the page");
        Assert.Equal(expected, stage.HostBytes);

        Assert.Equal(Errno.None, stage.Space.Msync(a, 3 * Page, SyncFlags.Sync));
        data.CopyTo(expected, Page);
        Assert.Equal(expected, stage.HostBytes);
        Assert.False(stage.PteWritable(a + Page), "msync cleaned the mapping");
        Assert.False(memory.HasFlags(pfn, FrameFlags.Dirty));

        cpu.Store(a + Page, 5L);
        Assert.True(memory.HasFlags(pfn, FrameFlags.Dirty), "the next store faulted and dirtied it again");
        Assert.Equal(Errno.None, stage.Space.Msync(a, Page, SyncFlags.Async));
        Assert.Equal(Errno.None, stage.Space.Msync(a, Page, SyncFlags.Invalidate));
        Assert.NotEqual(5L, BitConverter.ToInt64(stage.HostBytes, Page));
        Assert.Equal(Errno.None, stage.File.Sync());
        Assert.Equal(5L, BitConverter.ToInt64(stage.HostBytes, Page));
        Assert.False(stage.PteWritable(a + Page), "fsync cleaned the mapping too");
        memory.Put(pfn);
    }

    [Theory]
    [InlineData(Advice.Normal, 4, 36)]
    [InlineData(Advice.Random, 20, 21)]
    [InlineData(Advice.Sequential, 20, 52)]
    public void A_fault_that_misses_the_cache_reads_around_its_page_as_the_advice_says(Advice advice, int first, int end)
    {
        using var stage = new FileStage(FaultPath.MmapLock, 64, MapFlags.Shared, Protection.Read, faultAround: false);
        stage.Space.Advise(stage.Address, 64 * Page, advice);
        Assert.Equal(FileStage.ByteAt(20 * Page), stage.Cpu.Load<byte>(stage.Address + 20 * Page));
        Assert.Equal(end - first, stage.File.CachedPages);
        for (ulong page = 0; page < 64; page++)
        {
            Assert.Equal(page >= (ulong)first && page < (ulong)end, stage.File.Cache.IsCached(page));
        }
        // A neighbour read in beside the fault maps without I/O, whatever the path.
        Assert.Equal(FileStage.ByteAt((end - 1) * Page), stage.Cpu.Load<byte>(stage.Address + (ulong)(end - 1) * Page));
        Assert.Equal(end - first, stage.File.CachedPages);
    }

    [Fact]
    public void The_background_flusher_writes_back_once_dirty_pages_reach_its_ratio()
    {
        using var stage = new FileStage(FaultPath.VmaLock, 4, MapFlags.Shared);
        Assert.Throws<ArgumentOutOfRangeException>(() => stage.File.StartBackgroundWriteback(0, TimeSpan.FromMilliseconds(5)));
        Assert.Throws<ArgumentOutOfRangeException>(() => stage.File.StartBackgroundWriteback(0.5, TimeSpan.Zero));
        Assert.Equal(Errno.None, stage.File.StartBackgroundWriteback(0.5, TimeSpan.FromMilliseconds(5)));
        stage.Cpu.Read(stage.Address, new byte[4 * Page]);
        stage.Cpu.Store(stage.Address, 1L);
        // One dirty page of four is under the ratio: the flusher leaves it (whenever it runs).
        Thread.Sleep(100);
        Assert.Equal(0, stage.File.BackgroundWritebacks);
        Assert.NotEqual(1L, BitConverter.ToInt64(stage.HostBytes, 0));

        stage.Cpu.Store(stage.Address + Page, 2L);
        ThreadRole.WaitUntil(() => stage.File.BackgroundWritebacks > 0, "the flusher wrote the dirty pages back");
        Assert.Equal(1L, BitConverter.ToInt64(stage.HostBytes, 0));
        Assert.Equal(2L, BitConverter.ToInt64(stage.HostBytes, Page));
        Assert.False(stage.PteWritable(stage.Address), "the flusher cleaned the mapping");
        stage.File.Dispose();
        Assert.Equal(Errno.EBADF, stage.File.StartBackgroundWriteback(0.5, TimeSpan.FromMilliseconds(5)));
    }

    [Fact]
    public void Munmap_does_not_write_back_and_a_mapping_keeps_a_disposed_files_pages()
    {
        using AddressSpace space = NewSpace();
        HostFile file = NewHostFile(space, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        ulong a = MapFile(space, file, 2, MapFlags.Shared);
        ulong b = space.Map(0, 2 * Page, Protection.ReadWrite, MapFlags.Shared, file, 0);
        cpu.Store(a, 11L);
        space.Unmap(a, 2 * Page);
        Assert.Equal(Pattern(2 * Page, 7), File.ReadAllBytes(_path));

        file.Dispose();
        Assert.Equal(Errno.EBADF, file.TryRead(0, new byte[8], out _));
        Assert.Equal(11L, cpu.Load<long>(b));
        cpu.Store(b + Page, 12L);
        Assert.Equal(Errno.None, space.Msync(b, 2 * Page, SyncFlags.Sync));
        Assert.Equal(12L, BitConverter.ToInt64(File.ReadAllBytes(_path), Page));
        space.Unmap(b, 2 * Page);
        Assert.Equal(11L, BitConverter.ToInt64(File.ReadAllBytes(_path), 0));
        Assert.Equal(0, file.Cache.CachedPages);
    }

    [Fact]
    public void A_memory_file_maps_shared_pages_writable_at_once_as_shmem_does()
    {
        using AddressSpace space = NewSpace();
        using var file = new MemoryFile(space, "buffer");
        file.Truncate(2 * Page);
        using Cpu cpu = space.AttachCpu();
        ulong a = MapFile(space, file, 2, MapFlags.Shared);
        Assert.Equal(0L, cpu.Load<long>(a));
        Assert.True((space.Descriptor.PageTable.Lookup(a, space.Descriptor.Probes) & Paging.Pte.Writable) != 0);
        cpu.Store(a + 8, 3L);
        var back = new byte[8];
        file.Read(8, back);
        Assert.Equal(3L, BitConverter.ToInt64(back));
        MappingInfo info = space.GetMappings().Single();
        Assert.Equal("/memfd:buffer (deleted)", info.Name);
        Assert.Equal(1, info.DeviceMinor);
        Assert.Equal(Errno.None, space.Msync(a, 2 * Page, SyncFlags.Sync));
    }

    [Fact]
    public void The_page_offset_follows_split_merge_and_mremap_and_the_maps_name_the_file()
    {
        using AddressSpace space = NewSpace();
        using HostFile file = NewHostFile(space, 8 * Page);
        using Cpu cpu = space.AttachCpu();
        ulong a = MapFile(space, file, 4, MapFlags.Shared, offset: 2 * Page);
        space.Protect(a + Page, Page, Protection.Read);
        MappingInfo[] pieces = [.. space.GetMappings()];
        Assert.Equal([2UL * Page, 3UL * Page, 4UL * Page], pieces.Select(m => m.Offset));
        Assert.All(pieces, m => Assert.Equal(_path, m.Name));
        Assert.All(pieces, m => Assert.NotEqual(0UL, m.Inode));
        space.Protect(a + Page, Page, Protection.ReadWrite);
        Assert.Equal(2UL * Page, space.GetMappings().Single().Offset);

        // Adjacent mappings merge only where the file offsets continue.
        space.Map(a + 4 * Page, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, file, 6 * Page);
        Assert.Single(space.GetMappings());
        space.Map(a + 5 * Page, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, file, 0);
        Assert.Equal(2, space.MapCount);

        ulong moved = space.Remap(a + Page, Page, Page, RemapFlags.MayMove | RemapFlags.Fixed, 0x6000_0000);
        Assert.Equal(3UL * Page, space.GetMappings().Single(m => m.Start == moved).Offset);
        Assert.Equal(BitConverter.ToInt64(Pattern(8 * Page, 7), 3 * Page), cpu.Load<long>(moved));
        Assert.Contains(_path, space.GetMaps(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_forked_child_shares_a_shared_file_mapping()
    {
        using AddressSpace parent = NewSpace();
        using HostFile file = NewHostFile(parent, 2 * Page);
        using Cpu cpu = parent.AttachCpu();
        ulong a = MapFile(parent, file, 2, MapFlags.Shared);
        cpu.Store(a, 1L);
        using AddressSpace child = parent.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(1L, childCpu.Load<long>(a));
        childCpu.Store(a + Page, 2L);
        Assert.Equal(2L, cpu.Load<long>(a + Page));
        Assert.Equal(Errno.None, file.Sync());
        Assert.Equal(2L, BitConverter.ToInt64(File.ReadAllBytes(_path), Page));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Smaps_counts_a_private_file_mappings_copies_as_anonymous(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        using HostFile file = NewHostFile(space, 4 * Page);
        ulong a = MapFile(space, file, 4, MapFlags.Private);
        using Cpu cpu = space.AttachCpu();
        _ = cpu.Load<long>(a + 2 * Page);        // the file's pages (fault-around maps cached neighbours): not anonymous
        cpu.Store(a, 1L);                        // a copy-on-write copy: anonymous (smaps_account's PageAnon)

        string smaps = space.GetSmaps();
        Assert.Contains("Anonymous:             4 kB\n", smaps);
        Assert.DoesNotContain("Rss:                   4 kB\n", smaps);
    }
}
