using Microsoft.Win32.SafeHandles;

namespace Faultline.Backing;

/// <summary>
/// A swap file on the host (<c>swapon</c> of a regular file): slot n is the page at byte n × 4 KiB, read and written
/// with <see cref="RandomAccess"/> (positional I/O, no shared file position). The file is created, sized and deleted
/// on close.
/// </summary>
/// <remarks>Thread-safety: as <see cref="ISwapArea"/>; positional reads and writes of different slots never interfere.</remarks>
internal sealed class FileSwapArea : ISwapArea
{
    private readonly SafeFileHandle _file;

    /// <summary>Creates the file at <paramref name="path"/> with room for <paramref name="slots"/> pages.</summary>
    public FileSwapArea(string path, long slots)
    {
        Slots = slots;
        _file = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.None, FileOptions.DeleteOnClose);
        RandomAccess.SetLength(_file, slots * PageGeometry.PageSize);
    }

    /// <inheritdoc/>
    public long Slots { get; }

    /// <summary>Test hook: when set and true for a slot, the write fails as an I/O error would.</summary>
    public Func<long, bool>? FailWrite { get; set; }

    /// <inheritdoc/>
    public bool TryWrite(long slot, ReadOnlySpan<byte> page)
    {
        if (FailWrite?.Invoke(slot) == true)
        {
            return false;
        }
        try
        {
            RandomAccess.Write(_file, page, slot * PageGeometry.PageSize);
            return true;
        }
        catch (IOException)
        {
            // An I/O error: reclaim keeps the page dirty in memory (end_swap_bio_write's redirty).
            return false;
        }
    }

    /// <inheritdoc/>
    public void Read(long slot, Span<byte> page)
    {
        int read = 0;
        while (read < page.Length)
        {
            int n = RandomAccess.Read(_file, page[read..], slot * PageGeometry.PageSize + read);
            if (n == 0)
            {
                // Never written since the file was sized: a hole reads as zeroes.
                page[read..].Clear();
                return;
            }
            read += n;
        }
    }

    /// <inheritdoc/>
    public void Discard(long slot)
    {
        // The data is left in place: the next write of the slot overwrites it.
    }

    /// <inheritdoc/>
    public void Dispose() => _file.Dispose();
}
