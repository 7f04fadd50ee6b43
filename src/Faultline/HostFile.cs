using Faultline.Backing;
using Microsoft.Win32.SafeHandles;

namespace Faultline;

/// <summary>
/// A guest file over a host file: pages are read from the host file on first use (<see cref="RandomAccess.Read(SafeFileHandle, Span{byte}, long)"/>)
/// and written back on <see cref="GuestFile.Sync"/> and on disposal; <see cref="GuestFile.Truncate"/> resizes the host
/// file at once. The host file should not change underneath meanwhile (the cache does not see such changes).
/// </summary>
/// <remarks>Thread-safety and disposal as <see cref="GuestFile"/>; disposal writes dirty pages back (errors are lost,
/// as a close's writeback errors are unless fsync reported them), then closes a handle the file opened itself.</remarks>
public sealed class HostFile : GuestFile
{
    private HostFile(AddressSpace space, HostFileStore store, HostFileIdentity identity)
        : base(space, store, identity.Path, identity.DeviceMajor, identity.DeviceMinor, identity.Inode)
    {
    }

    /// <summary>
    /// Opens the host file at <paramref name="path"/> (which must exist) read-only, or for reading and writing when
    /// <paramref name="writable"/>. Host errors surface as the .NET exceptions of <see cref="File.OpenHandle"/>.
    /// </summary>
    public static HostFile Open(AddressSpace space, string path, bool writable)
    {
        ArgumentNullException.ThrowIfNull(space);
        SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, writable ? FileAccess.ReadWrite : FileAccess.Read,
            FileShare.ReadWrite);
        try
        {
            return new HostFile(space, new HostFileStore(handle, writable, ownsHandle: true), HostFileIdentity.Of(handle));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A guest file over an open host <paramref name="handle"/> (opened for writing when <paramref name="writable"/>).
    /// The handle stays the caller's: it must stay open until this file is disposed, and is not closed by it.
    /// </summary>
    public static HostFile FromHandle(AddressSpace space, SafeFileHandle handle, bool writable)
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(handle);
        return new HostFile(space, new HostFileStore(handle, writable, ownsHandle: false), HostFileIdentity.Of(handle));
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // A later close's writeback: the cache goes with the file, so its dirty pages are written now.
            _ = Sync();
        }
        base.Dispose(disposing);
    }
}
