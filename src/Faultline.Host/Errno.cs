namespace Faultline.Host;

/// <summary>
/// Linux errno values (asm-generic/errno-base.h, asm-generic/errno.h) that the memory-management
/// calls can return, plus a formatter so test failures print names instead of numbers.
/// </summary>
public static class Errno
{
    /// <summary>Success (not a real errno; used by the helpers that return errno as a value).</summary>
    public const int OK = 0;
    /// <summary>Operation not permitted.</summary>
    public const int EPERM = 1;
    /// <summary>No such file or directory.</summary>
    public const int ENOENT = 2;
    /// <summary>No such process.</summary>
    public const int ESRCH = 3;
    /// <summary>Bad file number.</summary>
    public const int EBADF = 9;
    /// <summary>Try again.</summary>
    public const int EAGAIN = 11;
    /// <summary>Out of memory (also: range not mapped, map count / address space exhausted).</summary>
    public const int ENOMEM = 12;
    /// <summary>Permission denied.</summary>
    public const int EACCES = 13;
    /// <summary>Bad address.</summary>
    public const int EFAULT = 14;
    /// <summary>Device or resource busy.</summary>
    public const int EBUSY = 16;

    /// <summary>Function not implemented (a system call the kernel lacks, e.g. mseal before 6.10).</summary>
    public const int ENOSYS = 38;
    /// <summary>File exists (MAP_FIXED_NOREPLACE over an existing mapping).</summary>
    public const int EEXIST = 17;
    /// <summary>No such device.</summary>
    public const int ENODEV = 19;
    /// <summary>Invalid argument.</summary>
    public const int EINVAL = 22;
    /// <summary>File too large.</summary>
    public const int EFBIG = 27;
    /// <summary>Value too large for defined data type.</summary>
    public const int EOVERFLOW = 75;
    /// <summary>Operation not supported (MAP_SHARED_VALIDATE with an unknown flag).</summary>
    public const int EOPNOTSUPP = 95;

    /// <summary>Returns the symbolic name of an errno value ("OK" for 0, the number otherwise).</summary>
    /// <param name="errno">The errno value.</param>
    /// <returns>A name such as "EINVAL".</returns>
    public static string Name(int errno) => errno switch
    {
        OK => "OK",
        EPERM => "EPERM",
        ENOENT => "ENOENT",
        ESRCH => "ESRCH",
        EBADF => "EBADF",
        EAGAIN => "EAGAIN",
        ENOMEM => "ENOMEM",
        EACCES => "EACCES",
        EFAULT => "EFAULT",
        EBUSY => "EBUSY",
        ENOSYS => "ENOSYS",
        EEXIST => "EEXIST",
        ENODEV => "ENODEV",
        EINVAL => "EINVAL",
        EFBIG => "EFBIG",
        EOVERFLOW => "EOVERFLOW",
        EOPNOTSUPP => "EOPNOTSUPP",
        _ => "errno " + errno.ToString(System.Globalization.CultureInfo.InvariantCulture),
    };
}
