using System.Runtime.InteropServices;

namespace Faultline.Host;

/// <summary>
/// A userfaultfd of this process for conformance tests of <c>UFFDIO_MOVE</c> (Linux 6.8): a range is registered for
/// missing faults and pages are moved into it. No handler runs, so nothing may touch a registered page that is not
/// populated (the access would wait for ever); use <c>mincore</c> to look.
/// </summary>
/// <remarks>Thread safety: one thread at a time. <see cref="Dispose"/> closes the userfaultfd (the range is then ordinary).</remarks>
public sealed unsafe class HostUserFaultMove : IDisposable
{
    private const long SysUserfaultfd = 323;
    private const long SysIoctl = 16;
    private const long SysClose = 3;
    private const int UffdUserModeOnly = 1;
    private const int OCloexec = 0x80000;
    private const int ONonblock = 0x800;
    private const ulong UffdApi = 0xAA;
    private const ulong UffdFeatureMove = 1UL << 16;
    private const ulong UffdioApi = 0xC018AA3F;       // _IOWR(0xAA, 0x3F, struct uffdio_api)
    private const ulong UffdioRegister = 0xC020AA00;  // _IOWR(0xAA, 0x00, struct uffdio_register)
    private const ulong UffdioMove = 0xC028AA05;      // _IOWR(0xAA, 0x05, struct uffdio_move)
    private const ulong UffdioRegisterModeMissing = 1;

    private static readonly Lazy<bool> s_supported = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    private readonly int _uffd;

    /// <summary>True when this host offers userfaultfd (to this user) with <c>UFFD_FEATURE_MOVE</c>.</summary>
    public static bool Supported => s_supported.Value;

    /// <summary>Opens a userfaultfd (user faults only, non-blocking) and negotiates the API.</summary>
    /// <exception cref="PlatformNotSupportedException">No userfaultfd, or no <c>UFFDIO_MOVE</c>.</exception>
    public HostUserFaultMove()
    {
        long fd = LibC.Syscall3(SysUserfaultfd, (nuint)(OCloexec | ONonblock | UffdUserModeOnly), 0, 0);
        if (fd < 0)
        {
            throw new PlatformNotSupportedException($"userfaultfd: errno {Marshal.GetLastPInvokeError()}");
        }
        _uffd = (int)fd;
        ulong* api = stackalloc ulong[3] { UffdApi, 0, 0 };
        if (LibC.Syscall3(SysIoctl, (nuint)_uffd, (nuint)UffdioApi, (nuint)api) != 0 || (api[1] & UffdFeatureMove) == 0)
        {
            _ = LibC.Syscall3(SysClose, (nuint)_uffd, 0, 0);
            throw new PlatformNotSupportedException("userfaultfd without UFFD_FEATURE_MOVE");
        }
    }

    /// <summary><c>UFFDIO_REGISTER</c> of [<paramref name="start"/>, + <paramref name="length"/>) for missing faults; 0 or the errno.</summary>
    public int Register(ulong start, ulong length)
    {
        ulong* register = stackalloc ulong[4] { start, length, UffdioRegisterModeMissing, 0 };
        return LibC.Syscall3(SysIoctl, (nuint)_uffd, (nuint)UffdioRegister, (nuint)register) == 0 ? 0 : Marshal.GetLastPInvokeError();
    }

    /// <summary>
    /// <c>UFFDIO_MOVE</c>; 0 or the errno, and <paramref name="moved"/> the bytes moved (<c>uffdio_move.move</c>, which
    /// holds the negative errno when nothing moved).
    /// </summary>
    public int Move(ulong destination, ulong source, ulong length, ulong mode, out long moved)
    {
        ulong* move = stackalloc ulong[5] { destination, source, length, mode, 0 };
        long result = LibC.Syscall3(SysIoctl, (nuint)_uffd, (nuint)UffdioMove, (nuint)move);
        int errno = result == 0 ? 0 : Marshal.GetLastPInvokeError();
        moved = (long)move[4];
        return errno;
    }

    /// <summary>Closes the userfaultfd.</summary>
    public void Dispose() => _ = LibC.Syscall3(SysClose, (nuint)_uffd, 0, 0);

    private static bool Probe()
    {
        try
        {
            using var probe = new HostUserFaultMove();
            return true;
        }
        catch (PlatformNotSupportedException)
        {
            return false;
        }
    }
}
