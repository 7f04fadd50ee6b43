namespace Faultline.Backing;

/// <summary>
/// Where a page cache reads its pages from and writes them back to (the filesystem under an <c>address_space</c>:
/// <c>read_folio</c>, <c>writepages</c>, <c>setattr</c>'s size change, <c>fsync</c>). A file with no store (tmpfs,
/// memfd) keeps its pages only in the cache.
/// </summary>
/// <remarks>
/// Called by one page cache, which serialises the writes, size changes and flushes (under its inode lock); reads of
/// different pages may run concurrently with each other and with those. Failures throw <see cref="IOException"/>.
/// </remarks>
internal interface IFileStore : IDisposable
{
    /// <summary>The file's length when the cache was set up (the inode's <c>i_size</c> read from disk).</summary>
    long Length { get; }

    /// <summary>True when the file was opened for writing (<c>FMODE_WRITE</c>).</summary>
    bool CanWrite { get; }

    /// <summary>Fills <paramref name="buffer"/> from <paramref name="offset"/>; returns the bytes read (fewer at the end).</summary>
    int Read(long offset, Span<byte> buffer);

    /// <summary>Writes all of <paramref name="data"/> at <paramref name="offset"/>, extending the file if needed.</summary>
    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Shrinks or extends (with zeros) the file to <paramref name="length"/> bytes.</summary>
    void SetLength(long length);

    /// <summary><c>fsync</c>: the written data reaches the disk.</summary>
    void Flush();
}
