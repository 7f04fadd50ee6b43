using Faultline.Physical;

namespace Faultline;

/// <summary>
/// Pages pinned by <see cref="AddressSpace.Pin"/> (the kernel's <c>pin_user_pages</c> with <c>FOLL_PIN</c>): each page's
/// guest frame, held with a pin and a reference, and its memory readable (and, for a write pin, writable) by the host
/// as a device would read or write it by DMA. The frames stay while the pins last, whatever the guest does: an unmap or
/// <c>MADV_DONTNEED</c> drops the mapping, not the frame; a fork copies a pinned private page for the child rather than
/// sharing it; the (future) reclaimer and THP collapse skip pinned frames.
/// </summary>
/// <remarks>
/// <para>
/// Coherency: the spans are the frames the guest mapped when <see cref="AddressSpace.Pin"/> returned. While the guest
/// keeps that mapping its loads and stores see the host's writes and the reverse, as DMA does; once the guest unmaps
/// the page (or drops it), a later touch faults in a different frame, and the pinned one is the host's alone.
/// </para>
/// <para>
/// Thread safety: the getters may be called from any thread. <see cref="Dispose"/> unpins, once (a second call does
/// nothing), and may come after the address space was disposed: the pins keep guest RAM alive until then. A span taken
/// from a getter is valid until <see cref="Dispose"/>; using one after, or while another thread disposes, is the
/// caller's use-after-free.
/// </para>
/// </remarks>
public sealed unsafe class PinnedPages : IDisposable
{
    private readonly PhysicalMemory _memory;
    private readonly long[] _frames;
    private int _disposed;

    internal PinnedPages(PhysicalMemory memory, ulong address, long[] frames, bool writable)
    {
        _memory = memory;
        Address = address;
        _frames = frames;
        IsWritable = writable;
    }

    /// <summary>The guest address of the first pinned page (the requested address rounded down to a page).</summary>
    public ulong Address { get; }

    /// <summary>Pages pinned.</summary>
    public int PageCount => _frames.Length;

    /// <summary>True for a write pin (<c>FOLL_WRITE</c>): the pages may be written through <see cref="GetWritablePage"/>.</summary>
    public bool IsWritable { get; }

    /// <summary>The memory of page <paramref name="index"/> (4 KiB), for reading.</summary>
    /// <exception cref="ArgumentOutOfRangeException">No such page.</exception>
    /// <exception cref="ObjectDisposedException">The pins were released.</exception>
    public ReadOnlySpan<byte> GetPage(int index) => new(PageAddress(index), PageGeometry.PageSize);

    /// <summary>The memory of page <paramref name="index"/> (4 KiB), for writing (a write pin only).</summary>
    /// <exception cref="InvalidOperationException">A read pin: its pages may be shared with the zero page or a relative.</exception>
    /// <exception cref="ArgumentOutOfRangeException">No such page.</exception>
    /// <exception cref="ObjectDisposedException">The pins were released.</exception>
    public Span<byte> GetWritablePage(int index)
    {
        if (!IsWritable)
        {
            throw new InvalidOperationException("the pages were pinned for reading");
        }
        return new(PageAddress(index), PageGeometry.PageSize);
    }

    /// <summary><c>unpin_user_pages</c>: releases every pin; a frame whose mappings went meanwhile is freed. Idempotent.</summary>
    public void Dispose()
    {
        // Full fence: one caller unpins, whatever the threads.
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        UnpinAll(_memory, _frames);
        _memory.Dispose();
    }

    /// <summary>Releases the pins on <paramref name="frames"/> (the zero frame carries none).</summary>
    internal static void UnpinAll(PhysicalMemory memory, ReadOnlySpan<long> frames)
    {
        foreach (long pfn in frames)
        {
            if (pfn != PhysicalMemory.ZeroFrame)
            {
                memory.Unpin(pfn);
            }
        }
    }

    /// <summary>The frame of page <paramref name="index"/> (tests).</summary>
    internal long FrameOf(int index) => _frames[index];

    private byte* PageAddress(int index)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(index);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(index, _frames.Length);
        // Acquire read; pairs with the exchange in Dispose.
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        return _memory.FrameAddress(_frames[index]);
    }
}
