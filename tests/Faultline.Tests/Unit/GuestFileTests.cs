using Faultline.Physical;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Guest files over their page cache, both kinds: reads and writes through the cache, read-in of a host file's pages,
/// write-back on Sync (the host file matches byte for byte), truncation (pages dropped, the partial page's tail
/// zeroed, a re-extension reads zeros), the page flags, the errnos of bad input, concurrent use of different pages,
/// and every frame back after disposal.
/// </summary>
public sealed class GuestFileTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;

    private readonly AddressSpace _space = new(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20 });
    private readonly string _path = Path.Combine(Path.GetTempPath(), $"faultline-file-{Guid.NewGuid():N}");

    public static TheoryData<bool> Kinds => [true, false];

    public void Dispose()
    {
        _space.Dispose();
        File.Delete(_path);
    }

    private PhysicalMemory Memory => _space.Descriptor.Memory;

    // A host file over an empty temp file, or a memory file.
    private GuestFile NewFile(bool host)
    {
        if (!host)
        {
            return new MemoryFile(_space, "memfd:test");
        }
        File.WriteAllBytes(_path, []);
        return HostFile.Open(_space, _path, writable: true);
    }

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Write_then_read_returns_the_bytes_and_stops_at_the_end(bool host)
    {
        using GuestFile file = NewFile(host);
        byte[] data = Pattern(3 * Page + 100, 1);
        Assert.Equal(data.Length, file.Write(500, data));
        Assert.Equal(500 + data.Length, file.Length);

        var back = new byte[data.Length + 1000];
        Assert.Equal(data.Length + 500, file.Read(0, back));
        Assert.True(back.AsSpan(0, 500).IndexOfAnyExcept((byte)0) < 0, "the hole before the write reads zeros");
        Assert.Equal(data, back.AsSpan(500, data.Length).ToArray());
        Assert.Equal(0, file.Read(file.Length, back));
        Assert.Equal(0, file.Read(file.Length + 10 * Page, back));
        Assert.Equal(4, file.CachedPages);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Writes_dirty_their_pages_and_sync_cleans_them(bool host)
    {
        using GuestFile file = NewFile(host);
        file.Write(Page + 10, Pattern(20, 2));
        Assert.True(file.Cache.TryGetCached(1, out long pfn));
        Assert.True(Memory.HasFlags(pfn, FrameFlags.Uptodate | FrameFlags.Dirty));
        Assert.Equal(Errno.None, file.Sync());
        // A memory file has nowhere to write: its pages stay dirty (tmpfs's do too).
        Assert.Equal(!host, Memory.HasFlags(pfn, FrameFlags.Dirty));
        Assert.False(Memory.HasFlags(pfn, FrameFlags.Writeback | FrameFlags.Locked));
        Memory.Put(pfn);
        Assert.False(file.Cache.TryGetCached(0, out _), "a page never touched is not cached");
    }

    [Fact]
    public void Sync_writes_the_host_file_byte_for_byte()
    {
        using GuestFile file = NewFile(host: true);
        var expected = new byte[5 * Page + 123];
        var random = new Random(3);
        for (int i = 0; i < 40; i++)
        {
            int offset = random.Next(expected.Length - 300);
            byte[] chunk = Pattern(random.Next(1, 300), i);
            file.Write(offset, chunk);
            chunk.CopyTo(expected, offset);
        }
        file.Write(expected.Length - 1, [expected[^1] = 0x5A]);
        Assert.Equal(Errno.None, file.Sync());
        Assert.Equal(expected, File.ReadAllBytes(_path));
        var back = new byte[expected.Length];
        Assert.Equal(expected.Length, file.Read(0, back));
        Assert.Equal(expected, back);
    }

    [Fact]
    public void A_host_file_is_read_through_the_cache_and_a_read_only_one_refuses_changes()
    {
        byte[] contents = Pattern(2 * Page + 7, 4);
        File.WriteAllBytes(_path, contents);
        using HostFile file = HostFile.Open(_space, _path, writable: false);
        Assert.False(file.CanWrite);
        Assert.Equal(contents.Length, file.Length);
        var back = new byte[contents.Length + 50];
        Assert.Equal(contents.Length, file.Read(0, back));
        Assert.Equal(contents, back.AsSpan(0, contents.Length).ToArray());
        Assert.Equal(3, file.CachedPages);

        Assert.Equal(Errno.EBADF, file.TryWrite(0, [1], out int written));
        Assert.Equal(0, written);
        Assert.Equal(Errno.EINVAL, file.Truncate(0));
        Assert.Equal(Errno.None, file.Sync());
        var error = Assert.Throws<MemoryOperationException>(() => file.Write(0, [1]));
        Assert.Equal(Errno.EBADF, error.Error);
        Assert.Equal(contents, File.ReadAllBytes(_path));
    }

    [Fact]
    public void A_file_from_a_handle_leaves_the_handle_open()
    {
        File.WriteAllBytes(_path, Pattern(100, 5));
        using var handle = File.OpenHandle(_path, FileMode.Open, FileAccess.ReadWrite);
        using (HostFile file = HostFile.FromHandle(_space, handle, writable: true))
        {
            file.Write(0, "guest"u8);
        }
        // Disposal wrote the dirty page back and left the handle to its owner.
        Assert.False(handle.IsClosed);
        var head = new byte[5];
        RandomAccess.Read(handle, head, 0);
        Assert.Equal("guest"u8.ToArray(), head);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Truncate_drops_pages_zeroes_the_tail_and_a_re_extension_reads_zeros(bool host)
    {
        using GuestFile file = NewFile(host);
        byte[] data = Pattern(4 * Page, 6);
        file.Write(0, data);
        Assert.Equal(Errno.None, file.Truncate(Page + 100));
        Assert.Equal(Page + 100, file.Length);
        Assert.Equal(2, file.CachedPages);
        var back = new byte[4 * Page];
        Assert.Equal(Page + 100, file.Read(0, back));
        Assert.Equal(data.AsSpan(0, Page + 100).ToArray(), back.AsSpan(0, Page + 100).ToArray());

        Assert.Equal(Errno.None, file.Truncate(3 * Page));
        Array.Clear(back);
        Assert.Equal(3 * Page, file.Read(0, back));
        Assert.Equal(data.AsSpan(0, Page + 100).ToArray(), back.AsSpan(0, Page + 100).ToArray());
        Assert.True(back.AsSpan(Page + 100, 2 * Page - 100).IndexOfAnyExcept((byte)0) < 0, "the cut bytes come back as zeros");
        if (host)
        {
            Assert.Equal(3 * Page, new FileInfo(_path).Length);
            Assert.Equal(Errno.None, file.Sync());
            Assert.Equal(back.AsSpan(0, 3 * Page).ToArray(), File.ReadAllBytes(_path));
        }
        Assert.Equal(Errno.None, file.Truncate(0));
        Assert.Equal(0, file.CachedPages);
        Assert.Equal(0, file.Read(0, back));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Bad_input_gets_linux_errnos_and_changes_nothing(bool host)
    {
        using GuestFile file = NewFile(host);
        file.Write(0, Pattern(100, 7));
        var buffer = new byte[10];
        Assert.Equal(Errno.EINVAL, file.TryRead(-1, buffer, out _));
        Assert.Equal(Errno.EINVAL, file.TryWrite(-1, buffer, out _));
        Assert.Equal(Errno.EINVAL, file.TryRead(long.MaxValue - 5, buffer, out _));
        Assert.Equal(Errno.EINVAL, file.TryWrite(long.MaxValue - 5, buffer, out _));
        Assert.Equal(Errno.EINVAL, file.Truncate(-1));
        Assert.Equal(100, file.Length);
        Assert.Equal(Errno.EINVAL, Assert.Throws<MemoryOperationException>(() => file.Read(-4096, buffer)).Error);
        Assert.Equal(1, file.CachedPages);

        file.Dispose();
        Assert.Equal(Errno.EBADF, file.TryRead(0, buffer, out _));
        Assert.Equal(Errno.EBADF, file.TryWrite(0, buffer, out _));
        Assert.Equal(Errno.EBADF, file.Truncate(0));
        Assert.Equal(Errno.EBADF, file.Sync());
    }

    [Fact]
    public void The_page_lock_try_lock_never_waits()
    {
        using GuestFile file = NewFile(host: false);
        file.Write(0, [1]);
        Assert.True(file.Cache.TryGetCached(0, out long pfn));
        Assert.True(file.Cache.TryLockPage(pfn));
        Assert.False(file.Cache.TryLockPage(pfn));
        file.Cache.UnlockPage(pfn);
        Assert.True(file.Cache.TryLockPage(pfn));
        file.Cache.UnlockPage(pfn);
        Memory.Put(pfn);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_frame_goes_back_after_disposal(bool host)
    {
        int before = Memory.FramesInUse;
        GuestFile file = NewFile(host);
        file.Write(0, Pattern(10 * Page, 8));
        file.Truncate(3 * Page + 1);
        Assert.Equal(before + 4, Memory.FramesInUse);
        file.Dispose();
        file.Dispose();
        Assert.Equal(before, Memory.FramesInUse);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Concurrent_readers_and_writers_of_different_pages_see_their_own_bytes(bool host)
    {
        const int Threads = 4, PagesEach = 8, Rounds = 30;
        using GuestFile file = NewFile(host);
        file.Truncate(Threads * PagesEach * Page);
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var workers = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int thread = t;
            workers[t] = new Thread(() =>
            {
                var back = new byte[Page];
                for (int round = 0; round < Rounds; round++)
                {
                    for (int p = 0; p < PagesEach; p++)
                    {
                        long offset = ((long)(p * Threads) + thread) * Page;
                        byte[] data = Pattern(Page, (thread * 1000) + (round * 10) + p);
                        file.Write(offset, data);
                        if (file.Read(offset, back) != Page || !back.AsSpan().SequenceEqual(data))
                        {
                            failures.Add($"thread {thread} page {p} round {round}");
                        }
                    }
                }
            });
        }
        foreach (Thread worker in workers)
        {
            worker.Start();
        }
        foreach (Thread worker in workers)
        {
            worker.Join();
        }
        Assert.Empty(failures);
        Assert.Equal(Threads * PagesEach, file.CachedPages);
        Assert.Equal(Errno.None, file.Sync());
        if (host)
        {
            byte[] onDisk = File.ReadAllBytes(_path);
            for (int t = 0; t < Threads; t++)
            {
                for (int p = 0; p < PagesEach; p++)
                {
                    long offset = ((long)(p * Threads) + t) * Page;
                    Assert.Equal(Pattern(Page, (t * 1000) + ((Rounds - 1) * 10) + p), onDisk.AsSpan((int)offset, Page).ToArray());
                }
            }
        }
    }

    [Fact]
    public void Readers_racing_to_read_in_the_same_pages_share_one_copy_of_each()
    {
        byte[] contents = Pattern(16 * Page, 10);
        File.WriteAllBytes(_path, contents);
        using HostFile file = HostFile.Open(_space, _path, writable: false);
        int before = Memory.FramesInUse;
        var failures = new System.Collections.Concurrent.ConcurrentBag<int>();
        using var start = new Barrier(4);
        var readers = new Thread[4];
        for (int t = 0; t < readers.Length; t++)
        {
            int thread = t;
            readers[t] = new Thread(() =>
            {
                var back = new byte[contents.Length];
                start.SignalAndWait();
                // Each thread walks the pages in its own order, so fills of one page overlap across threads.
                for (int i = 0; i < 16; i++)
                {
                    int page = (i * (thread + 1) * 5) % 16;
                    if (file.Read((long)page * Page, back.AsSpan(page * Page, Page)) != Page
                        || !back.AsSpan(page * Page, Page).SequenceEqual(contents.AsSpan(page * Page, Page)))
                    {
                        failures.Add(page);
                    }
                }
            });
            readers[t].Start();
        }
        foreach (Thread reader in readers)
        {
            reader.Join();
        }
        Assert.Empty(failures);
        Assert.Equal(16, file.CachedPages);
        Assert.Equal(before + 16, Memory.FramesInUse);
    }

    [Fact]
    public void A_file_outlives_the_address_space_it_was_made_in()
    {
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using var file = new MemoryFile(space);
        file.Write(0, Pattern(2 * Page, 12));
        space.Dispose();
        file.Write(2 * Page, Pattern(Page, 13));
        var back = new byte[3 * Page];
        Assert.Equal(3 * Page, file.Read(0, back));
        Assert.Equal(Pattern(2 * Page, 12), back.AsSpan(0, 2 * Page).ToArray());
        Assert.Equal(Pattern(Page, 13), back.AsSpan(2 * Page).ToArray());
    }
}
