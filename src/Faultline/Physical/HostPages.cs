using System.Runtime.InteropServices;

namespace Faultline.Physical;

/// <summary>
/// The few libc calls the arena needs: reserve address space whose pages cost host memory only once touched,
/// and hand pages back. Linux-only, like the rest of Faultline.
/// </summary>
internal static unsafe partial class HostPages
{
    private const int ProtRead = 1, ProtWrite = 2;
    private const int MapPrivate = 2, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    private const int MadvDontNeed = 4;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    private static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    private static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint addr, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    private static partial int Mprotect(nint addr, nuint length, int prot);

    /// <summary>Reserves <paramref name="bytes"/> of lazily backed, zero-filled, read-write memory.</summary>
    public static byte* Reserve(nuint bytes)
    {
        nint p = Mmap(0, bytes, ProtRead | ProtWrite, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (p == -1)
        {
            throw new OutOfMemoryException($"mmap of {bytes} bytes for guest physical memory failed, errno {Marshal.GetLastPInvokeError()}");
        }
        return (byte*)p;
    }

    /// <summary>Releases a reservation; false if the host refused.</summary>
    public static bool Release(byte* p, nuint bytes) => Munmap((nint)p, bytes) == 0;

    /// <summary>Drops the host pages behind a range (they read as zero afterwards).</summary>
    public static void Discard(byte* p, nuint bytes) => Madvise((nint)p, bytes, MadvDontNeed);

    /// <summary>Makes a range read-only, so a stray host write into it (the zero frame) crashes loudly.</summary>
    public static void MakeReadOnly(byte* p, nuint bytes) => Mprotect((nint)p, bytes, ProtRead);
}
