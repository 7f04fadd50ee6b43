using System.Runtime.InteropServices;

namespace Faultline.Host;

/// <summary>The file I/O calls a guest file is compared with: <c>open</c>, <c>pread</c>, <c>pwrite</c>, <c>ftruncate</c>.</summary>
public static partial class LibC
{
    /// <summary><c>O_RDONLY</c>.</summary>
    public const int O_RDONLY = 0;
    /// <summary><c>O_RDWR</c>.</summary>
    public const int O_RDWR = 2;

    /// <summary>Raw <c>open(2)</c> of an existing file. Returns the descriptor or -1 (errno in the last P/Invoke error).</summary>
    /// <param name="path">The file's path.</param>
    /// <param name="flags">O_* bits.</param>
    /// <returns>The descriptor or -1.</returns>
    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    public static partial int Open(string path, int flags);

    /// <summary>Raw <c>close(2)</c>.</summary>
    /// <param name="fd">The descriptor.</param>
    /// <returns>0 or -1.</returns>
    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "pread64", SetLastError = true)]
    private static unsafe partial nint Pread(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "pwrite64", SetLastError = true)]
    private static unsafe partial nint Pwrite(int fd, byte* buffer, nuint count, long offset);

    [LibraryImport("libc", EntryPoint = "ftruncate64", SetLastError = true)]
    private static partial int Ftruncate(int fd, long length);

    /// <summary><c>pread</c> returning errno (0 on success) and the count read.</summary>
    /// <param name="fd">The descriptor.</param>
    /// <param name="buffer">Where the bytes go; its length is the count asked for.</param>
    /// <param name="offset">The file offset.</param>
    /// <param name="read">Bytes read, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int PreadErrno(int fd, Span<byte> buffer, long offset, out int read)
    {
        fixed (byte* p = buffer)
        {
            nint r = Pread(fd, p, (nuint)buffer.Length, offset);
            read = r < 0 ? 0 : (int)r;
            return r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    /// <summary><c>pwrite</c> returning errno (0 on success) and the count written.</summary>
    /// <param name="fd">The descriptor.</param>
    /// <param name="data">The bytes to write.</param>
    /// <param name="offset">The file offset.</param>
    /// <param name="written">Bytes written, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int PwriteErrno(int fd, ReadOnlySpan<byte> data, long offset, out int written)
    {
        fixed (byte* p = data)
        {
            nint r = Pwrite(fd, p, (nuint)data.Length, offset);
            written = r < 0 ? 0 : (int)r;
            return r < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    /// <summary><c>ftruncate</c> returning errno (0 on success).</summary>
    /// <param name="fd">The descriptor.</param>
    /// <param name="length">The new length.</param>
    /// <returns>0 or the errno.</returns>
    public static int FtruncateErrno(int fd, long length) => Ftruncate(fd, length) == 0 ? 0 : Marshal.GetLastPInvokeError();
}
