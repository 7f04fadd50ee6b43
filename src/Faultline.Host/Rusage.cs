using System.Runtime.InteropServices;

namespace Faultline.Host;

/// <summary><c>struct rusage</c> on 64-bit Linux (two timevals of two longs, then fourteen longs).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct Rusage
{
    /// <summary><c>ru_utime</c> seconds.</summary>
    public long UserSeconds;
    /// <summary><c>ru_utime</c> microseconds.</summary>
    public long UserMicroseconds;
    /// <summary><c>ru_stime</c> seconds.</summary>
    public long SystemSeconds;
    /// <summary><c>ru_stime</c> microseconds.</summary>
    public long SystemMicroseconds;
    /// <summary><c>ru_maxrss</c> (KiB).</summary>
    public long MaxRss;
    /// <summary><c>ru_ixrss</c>.</summary>
    public long IxRss;
    /// <summary><c>ru_idrss</c>.</summary>
    public long IdRss;
    /// <summary><c>ru_isrss</c>.</summary>
    public long IsRss;
    /// <summary><c>ru_minflt</c>: minor page faults.</summary>
    public long MinorFaults;
    /// <summary><c>ru_majflt</c>: major page faults.</summary>
    public long MajorFaults;
    /// <summary><c>ru_nswap</c>.</summary>
    public long Swaps;
    /// <summary><c>ru_inblock</c>.</summary>
    public long InBlocks;
    /// <summary><c>ru_oublock</c>.</summary>
    public long OutBlocks;
    /// <summary><c>ru_msgsnd</c>.</summary>
    public long MessagesSent;
    /// <summary><c>ru_msgrcv</c>.</summary>
    public long MessagesReceived;
    /// <summary><c>ru_nsignals</c>.</summary>
    public long Signals;
    /// <summary><c>ru_nvcsw</c>: voluntary context switches.</summary>
    public long VoluntarySwitches;
    /// <summary><c>ru_nivcsw</c>: involuntary context switches.</summary>
    public long InvoluntarySwitches;

    /// <summary>User plus system CPU time in seconds.</summary>
    public readonly double CpuSeconds => UserSeconds + SystemSeconds + (UserMicroseconds + SystemMicroseconds) / 1e6;
}
