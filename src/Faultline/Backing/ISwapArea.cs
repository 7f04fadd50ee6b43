namespace Faultline.Backing;

/// <summary>
/// Where swapped-out pages live (the kernel's <c>swap_info_struct</c> storage: a swap file or partition through
/// <c>swap_writepage</c>/<c>swap_read_folio</c>, or zram): page-sized slots numbered from 0, read and written whole.
/// </summary>
/// <remarks>
/// Thread-safety: reads and writes of different slots may run at once on any threads; the slot allocator
/// (<see cref="SwapDevice"/>) never hands one slot to two users, so one slot sees one operation at a time. Disposal:
/// the owning <see cref="SwapSpace"/> disposes its areas when the last address space over its arena goes.
/// </remarks>
internal interface ISwapArea : IDisposable
{
    /// <summary>Slots in the area (slot 0 included, which is never handed out).</summary>
    long Slots { get; }

    /// <summary>Writes a page to a slot (<c>swap_writepage</c>). False when the write failed (the page stays dirty in memory).</summary>
    bool TryWrite(long slot, ReadOnlySpan<byte> page);

    /// <summary>Reads a slot into <paramref name="page"/> (<c>swap_read_folio</c>).</summary>
    void Read(long slot, Span<byte> page);

    /// <summary><c>swap_range_free</c>'s discard: the slot's contents are no longer needed.</summary>
    void Discard(long slot);
}
