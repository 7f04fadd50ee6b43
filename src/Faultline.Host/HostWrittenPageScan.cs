using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Faultline.Host;

/// <summary>
/// The host kernel's own dirty log for a region of this process (Linux 6.7+): the region is registered with an
/// asynchronous write-protecting userfaultfd (<c>UFFD_FEATURE_WP_ASYNC</c>, <c>UFFDIO_REGISTER_MODE_WP</c>), and
/// <see cref="GetAndClear"/> is one <c>PAGEMAP_SCAN</c> ioctl on <c>/proc/self/pagemap</c> with
/// <c>PM_SCAN_WP_MATCHING</c> over <c>PAGE_IS_WRITTEN</c>: it returns the written pages as address ranges and
/// write-protects them again. Used by the benchmarks to compare Faultline's dirty log with the kernel's. Not
/// thread-safe; dispose to close the userfaultfd (which unregisters the region).
/// </summary>
public sealed unsafe class HostWrittenPageScan : IDisposable
{
    private const long SysUserfaultfd = 323;
    private const long SysIoctl = 16;
    private const long SysClose = 3;
    private const int UffdUserModeOnly = 1;
    private const int OCloexec = 0x80000;
    private const ulong UffdApi = 0xAA;
    private const ulong UffdFeatureWpUnpopulated = 1UL << 13;
    private const ulong UffdFeatureWpAsync = 1UL << 15;
    private const ulong UffdioApi = 0xC018AA3F;       // _IOWR(0xAA, 0x3F, struct uffdio_api)
    private const ulong UffdioRegister = 0xC020AA00;  // _IOWR(0xAA, 0x00, struct uffdio_register)
    private const ulong UffdioRegisterModeWp = 1UL << 1;
    private const ulong PagemapScan = 0xC0606610;     // _IOWR('f', 16, struct pm_scan_arg)
    private const ulong PmScanWpMatching = 1UL << 0;
    private const ulong PmScanCheckWpAsync = 1UL << 1;
    private const ulong PageIsWritten = 1UL << 1;

    private readonly int _uffd;
    private readonly SafeFileHandle _pagemap;
    private readonly ulong _start;
    private readonly ulong _end;

    [StructLayout(LayoutKind.Sequential)]
    private struct PageRegion
    {
        public ulong Start;
        public ulong End;
        public ulong Categories;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ScanArg
    {
        public ulong Size;
        public ulong Flags;
        public ulong Start;
        public ulong End;
        public ulong WalkEnd;
        public ulong Vec;
        public ulong VecLen;
        public ulong MaxPages;
        public ulong CategoryInverted;
        public ulong CategoryMask;
        public ulong CategoryAnyofMask;
        public ulong ReturnMask;
    }

    private static readonly Lazy<bool> s_supported = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>True when the host kernel has asynchronous userfaultfd write protection and <c>PAGEMAP_SCAN</c>.</summary>
    public static bool Supported => s_supported.Value;

    /// <summary>Registers [<paramref name="start"/>, <paramref name="start"/> + <paramref name="length"/>) (page-aligned, anonymous memory).</summary>
    /// <exception cref="PlatformNotSupportedException">The kernel has no asynchronous write protection or no <c>PAGEMAP_SCAN</c>.</exception>
    public HostWrittenPageScan(ulong start, ulong length)
    {
        _start = start;
        _end = start + length;
        long fd = LibC.Syscall3(SysUserfaultfd, (nuint)(OCloexec | UffdUserModeOnly), 0, 0);
        if (fd < 0)
        {
            throw new PlatformNotSupportedException($"userfaultfd: errno {Marshal.GetLastPInvokeError()}");
        }
        _uffd = (int)fd;
        ulong* api = stackalloc ulong[3] { UffdApi, UffdFeatureWpAsync | UffdFeatureWpUnpopulated, 0 };
        ulong* register = stackalloc ulong[4] { start, length, UffdioRegisterModeWp, 0 };
        if (LibC.Syscall3(SysIoctl, (nuint)_uffd, (nuint)UffdioApi, (nuint)api) != 0
            || LibC.Syscall3(SysIoctl, (nuint)_uffd, (nuint)UffdioRegister, (nuint)register) != 0)
        {
            int errno = Marshal.GetLastPInvokeError();
            _ = LibC.Syscall3(SysClose, (nuint)_uffd, 0, 0);
            throw new PlatformNotSupportedException($"userfaultfd write protection: errno {errno}");
        }
        _pagemap = File.OpenHandle("/proc/self/pagemap", FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
    }

    /// <summary>
    /// Reports the written pages of the region into <paramref name="ranges"/> as (start, end) pairs and write-protects
    /// them again; returns the pages reported. The first call write-protects the whole region.
    /// </summary>
    /// <exception cref="IOException">The ioctl failed, or <paramref name="ranges"/> ran out of room.</exception>
    public long GetAndClear(Span<(ulong Start, ulong End)> ranges)
    {
        fixed ((ulong Start, ulong End)* output = ranges)
        {
            PageRegion* vec = stackalloc PageRegion[64];
            ulong at = _start;
            int used = 0;
            long pages = 0;
            while (at < _end)
            {
                var arg = new ScanArg
                {
                    Size = (ulong)sizeof(ScanArg),
                    Flags = PmScanWpMatching | PmScanCheckWpAsync,
                    Start = at,
                    End = _end,
                    Vec = (ulong)vec,
                    VecLen = 64,
                    CategoryMask = PageIsWritten,
                    ReturnMask = PageIsWritten,
                };
                long found = LibC.Syscall3(SysIoctl, (nuint)_pagemap.DangerousGetHandle(), (nuint)PagemapScan, (nuint)(&arg));
                if (found < 0)
                {
                    throw new IOException($"PAGEMAP_SCAN: errno {Marshal.GetLastPInvokeError()}");
                }
                for (long i = 0; i < found; i++)
                {
                    if (used == ranges.Length)
                    {
                        throw new IOException("PAGEMAP_SCAN: more written ranges than room for them");
                    }
                    output[used++] = (vec[i].Start, vec[i].End);
                    pages += (long)((vec[i].End - vec[i].Start) >> Linux.PAGE_SHIFT);
                }
                at = arg.WalkEnd;
            }
            return pages;
        }
    }

    private static bool Probe()
    {
        nint page = LibC.MapAnonymousSmallPages(Linux.PAGE_SIZE);
        try
        {
            using var scan = new HostWrittenPageScan((ulong)page, Linux.PAGE_SIZE);
            Span<(ulong, ulong)> ranges = stackalloc (ulong, ulong)[1];
            scan.GetAndClear(ranges);
            return true;
        }
        catch (Exception e) when (e is PlatformNotSupportedException or IOException)
        {
            return false;
        }
        finally
        {
            _ = LibC.Munmap(page, (nuint)Linux.PAGE_SIZE);
        }
    }

    /// <summary>Closes the pagemap handle and the userfaultfd.</summary>
    public void Dispose()
    {
        _pagemap.Dispose();
        _ = LibC.Syscall3(SysClose, (nuint)_uffd, 0, 0);
    }
}
