using System.Globalization;
using Faultline.Backing;

namespace Faultline;

/// <summary>
/// A file as the guest's kernel sees it: its bytes live in a page cache of guest RAM frames (the address space's
/// arena), read in on first use and shared by every reader and writer, so file I/O and (later) mappings of the file see
/// one copy of each page, as on Linux. Two kinds: <see cref="HostFile"/> (a host file underneath, written back on
/// <see cref="Sync"/>) and <see cref="MemoryFile"/> (tmpfs or memfd: the pages are the file).
/// </summary>
/// <remarks>
/// <para>Offsets and lengths are bytes; a call with bad input returns Linux's errno (the <c>Try</c> forms) or throws
/// <see cref="MemoryOperationException"/> carrying it, and changes nothing: EINVAL for a negative offset or one whose
/// end overflows a signed 64-bit offset (<c>rw_verify_area</c>), EBADF for a write to a file opened read-only or for
/// any call after <see cref="Dispose()"/>. The host file system's size limit is met at write-back: a write past it
/// succeeds in the cache and <see cref="Sync"/> reports EFBIG, where Linux's <c>pwrite</c> fails at once.</para>
/// <para>Thread-safety: reads run concurrently with each other and with everything else, without a file lock; writes,
/// truncations and syncs take the file's inode lock and run one at a time (Linux's <c>i_rwsem</c>); a read that races
/// a write of the same bytes may see part of it, as on Linux. Disposal must not overlap any other call on the file.</para>
/// <para>Disposal: <see cref="Dispose()"/> closes the file. Without mappings it releases the cached pages (a
/// <see cref="HostFile"/> writes its dirty pages back first) and the file's hold on the address space's guest RAM, which
/// outlives the address space until then; mappings of the file keep it (as a mapping keeps a closed descriptor's file
/// on Linux) until the last one goes, which writes back what they dirtied.</para>
/// <para>Mappings: <see cref="AddressSpace.Map(ulong, ulong, Protection, MapFlags, GuestFile, long)"/> maps the file's
/// pages, shared or private; file reads and writes and the mappings see one copy of each page.</para>
/// </remarks>
public abstract class GuestFile : IDisposable
{
    private protected GuestFile(AddressSpace space, IFileStore? store, string mapsName, int deviceMajor, int deviceMinor, ulong inode)
    {
        ArgumentNullException.ThrowIfNull(space);
        Cache = new PageCache(space.Descriptor.Memory, store);
        Backing = new FileBacking(Cache, mapsName, deviceMajor, deviceMinor, inode);
    }

    /// <summary>The file's length in bytes (<c>i_size</c>; <c>fstat</c>'s <c>st_size</c>). A snapshot.</summary>
    public long Length => Cache.Length;

    /// <summary>True when the file accepts writes and truncation.</summary>
    public bool CanWrite => Cache.CanWrite;

    /// <summary>Pages of the file in guest RAM now (the page cache's <c>nrpages</c>). A snapshot.</summary>
    public long CachedPages => Cache.CachedPages;

    /// <summary>The page cache (for the file-mapping layer and tests).</summary>
    internal PageCache Cache { get; }

    /// <summary>The file as the backing of its mappings (<c>vm_file</c>).</summary>
    internal FileBacking Backing { get; }

    /// <summary>True once <see cref="Dispose()"/> ran: file calls and new mappings answer EBADF (existing mappings stay).</summary>
    public bool IsDisposed => Cache.IsClosed;

    /// <summary>
    /// <c>pread</c>: reads up to <paramref name="buffer"/>'s length bytes at <paramref name="offset"/> into it; returns
    /// the count (fewer at the end of the file, 0 at or past it). Throws <see cref="MemoryOperationException"/> on error.
    /// </summary>
    public int Read(long offset, Span<byte> buffer)
    {
        Errno error = TryRead(offset, buffer, out int read);
        return error == Errno.None ? read : throw Failure("pread64", error, offset, buffer.Length);
    }

    /// <summary><c>pread</c> returning the errno instead of throwing: EINVAL, EBADF, ENOMEM (no guest frame), EIO.</summary>
    public Errno TryRead(long offset, Span<byte> buffer, out int read) => Cache.Read(offset, buffer, out read);

    /// <summary>
    /// <c>pwrite</c>: writes <paramref name="data"/> at <paramref name="offset"/> into the page cache (the pages become
    /// dirty until <see cref="Sync"/>), extending the file past its end; returns the count. Throws
    /// <see cref="MemoryOperationException"/> on error.
    /// </summary>
    public int Write(long offset, ReadOnlySpan<byte> data)
    {
        Errno error = TryWrite(offset, data, out int written);
        return error == Errno.None ? written : throw Failure("pwrite64", error, offset, data.Length);
    }

    /// <summary><c>pwrite</c> returning the errno instead of throwing: EINVAL, EBADF, ENOMEM (no guest frame), EIO.</summary>
    public Errno TryWrite(long offset, ReadOnlySpan<byte> data, out int written) => Cache.Write(offset, data, out written);

    /// <summary>
    /// <c>ftruncate</c>: the file becomes <paramref name="length"/> bytes; bytes past a shrunk end read as zeros when
    /// the file grows again. EINVAL for a negative length or a read-only file, EBADF after disposal, EIO when the host
    /// file cannot be resized.
    /// </summary>
    public Errno Truncate(long length) => Cache.Truncate(length);

    /// <summary><c>fsync</c>: dirty pages are written back and the host file is flushed. EIO on a host failure, EBADF after disposal.</summary>
    public Errno Sync() => Cache.Sync();

    /// <summary>
    /// Starts a background flusher for this file (the kernel's writeback worker at <c>dirty_background_ratio</c>):
    /// every <paramref name="period"/>, once the file's dirty pages reach <paramref name="dirtyRatio"/> of its cached
    /// pages, they are written back as <see cref="Sync"/> writes them (mappings cleaned first, so later stores dirty the
    /// pages again). A second call replaces the first; it stops when the file's pages are released. A
    /// <see cref="MemoryFile"/> has nothing to write back. EBADF after disposal.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="dirtyRatio"/> not in (0, 1], or a period not positive.</exception>
    public Errno StartBackgroundWriteback(double dirtyRatio, TimeSpan period)
    {
        if (!(dirtyRatio > 0 && dirtyRatio <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(dirtyRatio), dirtyRatio, "must be in (0, 1]");
        }
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(period, TimeSpan.Zero);
        if (IsDisposed)
        {
            return Errno.EBADF;
        }
        Cache.StartBackgroundWriteback(dirtyRatio, period);
        return Errno.None;
    }

    /// <summary>Write-backs the background flusher has run so far (0 without one). A snapshot.</summary>
    public int BackgroundWritebacks => Cache.BackgroundWritebacks;

    /// <summary>Releases the file's pages and its hold on guest RAM (see the class remarks). Idempotent.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the page cache; a derived file writes back first when it has somewhere to write.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (disposing)
        {
            Cache.Dispose();
        }
    }

    private static MemoryOperationException Failure(string operation, Errno error, long offset, int count) =>
        new(operation, error, string.Create(CultureInfo.InvariantCulture, $"{operation}(fd, buf, {count}, {offset})"),
            unchecked((ulong)offset), (ulong)count);
}
