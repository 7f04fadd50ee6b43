using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Faultline.Backing;

/// <summary>
/// What the maps show of an open host file: its path as <c>d_path</c> prints it (the target of
/// <c>/proc/self/fd/N</c>, with <c>" (deleted)"</c> once unlinked), its device and its inode (<c>fstat</c>).
/// </summary>
internal readonly partial record struct HostFileIdentity(string Path, int DeviceMajor, int DeviceMinor, ulong Inode)
{
    // struct stat: st_dev at 0 and st_ino at 8 on x86-64 and arm64 (144 and 128 bytes in all).
    private const int StatSize = 144;

    /// <summary>The identity of the file open as <paramref name="handle"/>. Throws <see cref="IOException"/> if fstat fails.</summary>
    public static unsafe HostFileIdentity Of(SafeFileHandle handle)
    {
        int fd = (int)handle.DangerousGetHandle();
        byte* stat = stackalloc byte[StatSize];
        if (Fstat(fd, stat) != 0)
        {
            throw new IOException("fstat failed", Marshal.GetLastPInvokeError());
        }
        ulong device = *(ulong*)stat;
        ulong inode = *(ulong*)(stat + 8);
        string path = File.ResolveLinkTarget($"/proc/self/fd/{fd}", returnFinalTarget: false)?.FullName ?? string.Empty;
        // gnu_dev_major / gnu_dev_minor.
        int major = (int)(((device >> 8) & 0xfff) | ((device >> 32) & ~0xfffUL));
        int minor = (int)((device & 0xff) | ((device >> 12) & ~0xffUL));
        return new HostFileIdentity(path, major, minor, inode);
    }

    [LibraryImport("libc", EntryPoint = "fstat", SetLastError = true)]
    private static unsafe partial int Fstat(int fd, byte* stat);
}
