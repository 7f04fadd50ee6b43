using K4os.Compression.LZ4;

namespace Faultline.Backing;

/// <summary>
/// An in-memory compressed swap area (zram): each slot holds its page LZ4-compressed in a managed buffer, a page of
/// one repeated byte as that byte alone (zram's same-filled pages), and an incompressible page as it is.
/// </summary>
/// <remarks>
/// Thread-safety: as <see cref="ISwapArea"/>. Each slot's buffer is replaced whole by a release store and read with an
/// acquire load, so a reader sees a complete buffer.
/// </remarks>
internal sealed class CompressedSwapArea : ISwapArea
{
    private readonly byte[]?[] _slots;
    private readonly byte[] _sameFilled;
    private readonly bool[] _isSameFilled;
    private long _storedBytes;

    /// <summary>An empty area of <paramref name="slots"/> slots.</summary>
    public CompressedSwapArea(long slots)
    {
        Slots = slots;
        _slots = new byte[]?[slots];
        _sameFilled = new byte[slots];
        _isSameFilled = new bool[slots];
    }

    /// <inheritdoc/>
    public long Slots { get; }

    /// <summary>Bytes of compressed data held now (zram's <c>compr_data_size</c>).</summary>
    public long StoredBytes => Interlocked.Read(ref _storedBytes);

    /// <summary>Test hook: when set and true for a slot, the write fails as an allocation failure in zram would.</summary>
    public Func<long, bool>? FailWrite { get; set; }

    /// <inheritdoc/>
    public bool TryWrite(long slot, ReadOnlySpan<byte> page)
    {
        if (FailWrite?.Invoke(slot) == true)
        {
            return false;
        }
        Discard(slot);
        if (!page.ContainsAnyExcept(page[0]))
        {
            _sameFilled[slot] = page[0];
            // Release: the fill byte is written before the flag that says to use it.
            Volatile.Write(ref _isSameFilled[slot], true);
            return true;
        }
        byte[] buffer = new byte[LZ4Codec.MaximumOutputSize(page.Length)];
        int length = LZ4Codec.Encode(page, buffer, LZ4Level.L00_FAST);
        byte[] stored = length > 0 && length < page.Length ? buffer.AsSpan(0, length).ToArray() : page.ToArray();
        Interlocked.Add(ref _storedBytes, stored.Length);
        // Release: the buffer's contents are complete before a reader can load it.
        Volatile.Write(ref _slots[slot], stored);
        return true;
    }

    /// <inheritdoc/>
    public void Read(long slot, Span<byte> page)
    {
        // Acquire loads; pair with TryWrite's release stores.
        if (Volatile.Read(ref _isSameFilled[slot]))
        {
            page.Fill(_sameFilled[slot]);
            return;
        }
        byte[]? stored = Volatile.Read(ref _slots[slot]);
        if (stored is null)
        {
            page.Clear();
            return;
        }
        if (stored.Length == page.Length)
        {
            stored.CopyTo(page);
            return;
        }
        int decoded = LZ4Codec.Decode(stored, page);
        if (decoded != page.Length)
        {
            throw new InvalidDataException($"swap slot {slot}: {decoded} bytes decoded, not a page");
        }
    }

    /// <inheritdoc/>
    public void Discard(long slot)
    {
        Volatile.Write(ref _isSameFilled[slot], false);
        byte[]? old = Interlocked.Exchange(ref _slots[slot], null);
        if (old is not null)
        {
            Interlocked.Add(ref _storedBytes, -old.Length);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Array.Clear(_slots);
        Interlocked.Exchange(ref _storedBytes, 0);
    }
}
