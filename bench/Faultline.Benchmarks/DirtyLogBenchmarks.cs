using BenchmarkDotNet.Attributes;
using Faultline.Host;

namespace Faultline.Benchmarks;

/// <summary>
/// A dirty-log get-and-clear over 1 GiB of populated anonymous memory with 1 % of its pages written since the
/// previous call (every 100th page, written in the iteration setup, outside the measurement): Faultline's
/// <see cref="AddressSpace.GetAndClearDirtyLog"/> against the host kernel reading the region's 2 MiB of
/// <c>/proc/self/pagemap</c> (what a soft-dirty tracker reads after <c>clear_refs</c>; the read alone, without the
/// clear) and against the kernel's own get-and-clear, <c>PAGEMAP_SCAN</c> with <c>PM_SCAN_WP_MATCHING</c> over an
/// asynchronous write-protecting userfaultfd (Linux 6.7+).
/// </summary>
[InvocationCount(1)]
[WarmupCount(3)]
[IterationCount(20)]
public unsafe class DirtyLogBenchmarks
{
    private const ulong Length = 1UL << 30;
    private const ulong Pages = Length / 4096;
    private const ulong Stride = 100;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;
    private HostWrittenPageScan? _scan;
    private readonly ulong[] _bitmap = new ulong[Pages / 64];
    private readonly ulong[] _pagemap = new ulong[Pages];
    private readonly (ulong Start, ulong End)[] _ranges = new (ulong, ulong)[Pages / Stride + 1];
    private Microsoft.Win32.SafeHandles.SafeFileHandle? _pagemapFile;

    /// <summary>What is measured.</summary>
    public enum Method
    {
        /// <summary>Faultline's get-and-clear.</summary>
        Faultline,
        /// <summary>The host: one pread of the region's pagemap entries, scanned for a bit.</summary>
        HostPagemapRead,
        /// <summary>The host: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING over PAGE_IS_WRITTEN.</summary>
        HostPagemapScan,
    }

    /// <summary>The method.</summary>
    [Params(Method.Faultline, Method.HostPagemapRead, Method.HostPagemapScan)]
    public Method Kind { get; set; }

    /// <summary>Maps and populates the region, and arms it once.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        if (Kind == Method.Faultline)
        {
            (_space, _cpu, _idle) = Spaces.Create(BenchPath.MmapLock, (long)Length + (64L << 20));
            _region = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Populate);
            _space.GetAndClearDirtyLog(_region, Length, _bitmap);
            return;
        }
        _region = (ulong)LibC.MapAnonymousSmallPages(Length);
        for (ulong page = 0; page < Pages; page++)
        {
            *(long*)(_region + page * 4096) = 1;
        }
        if (Kind == Method.HostPagemapScan)
        {
            _scan = new HostWrittenPageScan(_region, Length);
            _scan.GetAndClear(_ranges);
        }
        else
        {
            _pagemapFile = File.OpenHandle("/proc/self/pagemap", FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        }
    }

    /// <summary>Writes 1 % of the pages (not measured).</summary>
    [IterationSetup]
    public void WriteOnePercent()
    {
        for (ulong page = 0; page < Pages; page += Stride)
        {
            ulong at = _region + page * 4096;
            if (_cpu is { } cpu)
            {
                cpu.Store(at, (long)page);
            }
            else
            {
                *(long*)at = (long)page;
            }
        }
    }

    /// <summary>One get-and-clear of the whole region; returns the pages found written.</summary>
    [Benchmark]
    public long GetAndClear()
    {
        switch (Kind)
        {
            case Method.Faultline:
                return _space!.GetAndClearDirtyLog(_region, Length, _bitmap);
            case Method.HostPagemapScan:
                return _scan!.GetAndClear(_ranges);
            default:
                Span<byte> bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(_pagemap.AsSpan());
                long offset = (long)(_region / 4096 * 8);
                for (int done = 0; done < bytes.Length;)
                {
                    done += RandomAccess.Read(_pagemapFile!, bytes[done..], offset + done);
                }
                long found = 0;
                foreach (ulong entry in _pagemap)
                {
                    found += (long)((entry >> 55) & 1);
                }
                return found;
        }
    }

    /// <summary>Releases everything.</summary>
    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _scan?.Dispose();
        _pagemapFile?.Dispose();
        if (_space is null)
        {
            LibC.Munmap((nint)_region, (nuint)Length);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
