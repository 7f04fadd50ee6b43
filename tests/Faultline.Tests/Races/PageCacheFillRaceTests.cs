using Faultline.Backing;
using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Deterministic races of a page cache's read-in: the first reader of a page is stopped inside the store's read with
/// the page inserted and locked, and a second reader, a truncation or a try-lock meets it there. The second reader must
/// wait and share the page (one store read), take over when the fill fails, and the truncation must zero the tail of
/// the page after the fill, never before it.
/// </summary>
public sealed class PageCacheFillRaceTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private readonly AddressSpace _space = new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

    public void Dispose() => _space.Dispose();

    [Fact]
    public void A_reader_meeting_a_fill_in_progress_waits_for_it_and_shares_the_page()
    {
        var store = new GatedStore(2 * Page);
        using var cache = new PageCache(_space.Descriptor.Memory, store);
        var first = new byte[Page];
        var second = new byte[Page];
        Task<Errno> filler = Task.Run(() => cache.Read(0, first, out _));
        Assert.True(store.Entered.Wait(Wait), "the first read reached the store");

        Assert.True(cache.TryGetCached(0, out long pfn));
        Assert.False(cache.TryLockPage(pfn), "the page is locked while it is filled");
        Assert.False(_space.Descriptor.Memory.HasFlags(pfn, FrameFlags.Uptodate));
        Task<Errno> waiter = Task.Run(() => cache.Read(0, second, out _));
        Assert.False(waiter.Wait(TimeSpan.FromMilliseconds(100)), "a reader of a page being filled waits for the fill");

        store.Release.Set();
        Assert.Equal(Errno.None, filler.Result);
        Assert.Equal(Errno.None, waiter.Result);
        Assert.Equal(GatedStore.Contents(0, Page), first);
        Assert.Equal(first, second);
        Assert.Equal(1, store.Reads);
        Assert.Equal(1, cache.CachedPages);
        Assert.True(_space.Descriptor.Memory.HasFlags(pfn, FrameFlags.Uptodate));
        _space.Descriptor.Memory.Put(pfn);
    }

    [Fact]
    public void A_failed_fill_leaves_the_page_to_the_waiting_reader()
    {
        var store = new GatedStore(Page) { FailFirst = true };
        using var cache = new PageCache(_space.Descriptor.Memory, store);
        var first = new byte[Page];
        var second = new byte[Page];
        Task<Errno> filler = Task.Run(() => cache.Read(0, first, out _));
        Assert.True(store.Entered.Wait(Wait), "the first read reached the store");
        Task<Errno> waiter = Task.Run(() => cache.Read(0, second, out _));
        Assert.False(waiter.Wait(TimeSpan.FromMilliseconds(100)), "a reader of a page being filled waits for the fill");

        store.Release.Set();
        Assert.Equal(Errno.EIO, filler.Result);
        Assert.Equal(Errno.None, waiter.Result);
        Assert.Equal(GatedStore.Contents(0, Page), second);
        Assert.Equal(2, store.Reads);
        Assert.Equal(1, cache.CachedPages);
    }

    [Fact]
    public void A_truncation_waits_for_the_fill_of_the_page_it_cuts_and_zeroes_its_tail()
    {
        var store = new GatedStore(2 * Page);
        using var cache = new PageCache(_space.Descriptor.Memory, store);
        var first = new byte[Page];
        Task<Errno> filler = Task.Run(() => cache.Read(Page, first, out _));
        Assert.True(store.Entered.Wait(Wait), "the read reached the store");
        Task<Errno> truncation = Task.Run(() => cache.Truncate(Page + 10));
        Assert.True(store.Resized.Wait(Wait), "the truncation resized the store");
        Assert.False(truncation.Wait(TimeSpan.FromMilliseconds(100)), "the truncation waits for the page lock");

        store.Release.Set();
        Assert.Equal(Errno.None, filler.Result);
        Assert.Equal(Errno.None, truncation.Result);
        Assert.Equal(GatedStore.Contents(Page, Page), first);
        Assert.Equal(Errno.None, cache.Truncate(2 * Page));
        var back = new byte[Page];
        Assert.Equal(Errno.None, cache.Read(Page, back, out int read));
        Assert.Equal(Page, read);
        Assert.Equal(GatedStore.Contents(Page, 10), back.AsSpan(0, 10).ToArray());
        Assert.True(back.AsSpan(10).IndexOfAnyExcept((byte)0) < 0, "the cut tail reads as zeros");
    }
}
