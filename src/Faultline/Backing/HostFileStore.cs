using Microsoft.Win32.SafeHandles;

namespace Faultline.Backing;

/// <summary>A host file as a page cache's store: positional reads and writes through <see cref="RandomAccess"/>.</summary>
/// <remarks>Thread-safety as <see cref="IFileStore"/> (positional I/O keeps no shared file position).</remarks>
internal sealed class HostFileStore : IFileStore
{
    private readonly SafeFileHandle _handle;
    private readonly bool _ownsHandle;

    /// <summary>A store over <paramref name="handle"/>, closed on disposal when <paramref name="ownsHandle"/>.</summary>
    public HostFileStore(SafeFileHandle handle, bool writable, bool ownsHandle)
    {
        _handle = handle;
        CanWrite = writable;
        _ownsHandle = ownsHandle;
        Length = RandomAccess.GetLength(handle);
    }

    /// <inheritdoc />
    public long Length { get; }

    /// <inheritdoc />
    public bool CanWrite { get; }

    /// <inheritdoc />
    public int Read(long offset, Span<byte> buffer) => RandomAccess.Read(_handle, buffer, offset);

    /// <inheritdoc />
    public void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_handle, data, offset);

    /// <inheritdoc />
    /// <remarks>.NET reports the host's EFBIG as an argument error; it becomes an <see cref="IOException"/> carrying
    /// the errno (27) as its HResult, as .NET's other raw errnos are.</remarks>
    public void SetLength(long length)
    {
        try
        {
            RandomAccess.SetLength(_handle, length);
        }
        catch (ArgumentOutOfRangeException tooLarge)
        {
            throw new IOException(tooLarge.Message, (int)Errno.EFBIG);
        }
    }

    /// <inheritdoc />
    public void Flush() => RandomAccess.FlushToDisk(_handle);

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsHandle)
        {
            _handle.Dispose();
        }
    }
}
