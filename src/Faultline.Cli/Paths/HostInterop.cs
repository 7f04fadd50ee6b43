using System.Runtime.InteropServices;

namespace Faultline.Cli.Paths;

/// <summary>
/// The libc calls the kernel path and the reports need. Kept here, small and internal, rather than in
/// Faultline.Host (whose API is still moving): mmap/munmap/mprotect/madvise and getrusage.
/// </summary>
internal static unsafe partial class HostInterop
{
    public const int ProtRead = 1, ProtWrite = 2;
    public const int MapPrivate = 2, MapAnonymous = 0x20;
    public const int MadvNoHugePage = 15;
    public const int RusageSelf = 0, RusageThread = 1;

    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    [LibraryImport("libc", EntryPoint = "getrusage", SetLastError = true)]
    private static partial int GetRusage(int who, Rusage* usage);

    /// <summary><c>getrusage</c>: RUSAGE_SELF (the process) or RUSAGE_THREAD (the calling thread).</summary>
    public static Rusage Usage(int who)
    {
        Rusage usage;
        if (GetRusage(who, &usage) != 0)
        {
            throw new InvalidOperationException($"getrusage failed, errno {Marshal.GetLastPInvokeError()}");
        }
        return usage;
    }

    /// <summary>The last errno as text.</summary>
    public static string LastError() => $"errno {Marshal.GetLastPInvokeError()}";
}

/// <summary><c>struct rusage</c> on 64-bit Linux (timevals of two longs, then fourteen longs).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct Rusage
{
    public long UserSeconds, UserMicroseconds, SystemSeconds, SystemMicroseconds;
    public long MaxRss, IxRss, IdRss, IsRss, MinorFaults, MajorFaults, Swaps, InBlocks, OutBlocks;
    public long MessagesSent, MessagesReceived, Signals, VoluntarySwitches, InvoluntarySwitches;

    /// <summary>User plus system CPU time in seconds.</summary>
    public readonly double CpuSeconds => UserSeconds + SystemSeconds + (UserMicroseconds + SystemMicroseconds) / 1e6;
}
