using System.Runtime.InteropServices;

namespace Faultline.Benchmarks;

/// <summary>The libc memory calls of the kernel anchors.</summary>
internal static partial class Libc
{
    public const int ProtRead = 1, ProtWrite = 2, MapPrivate = 2, MapAnon = 0x20, MadvNoHugePage = 15;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    /// <summary>Private anonymous read-write memory without transparent huge pages (4 KiB faults, like Faultline).</summary>
    public static nint MapAnonymous(ulong length)
    {
        nint p = Mmap(0, (nuint)length, ProtRead | ProtWrite, MapPrivate | MapAnon, -1, 0);
        if (p == -1)
        {
            throw new InvalidOperationException($"mmap failed, errno {Marshal.GetLastPInvokeError()}");
        }
        Madvise(p, (nuint)length, MadvNoHugePage);
        return p;
    }
}
