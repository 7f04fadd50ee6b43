using Faultline.Host;
using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// The control plane: an untouched 64 KiB <c>Map</c> + <c>Unmap</c> pair, and <c>Protect</c> of one page in the middle
/// of a large populated VMA (read-only, which splits the VMA in three and write-protects the PTE, then read-write
/// again, which merges it back: two calls per operation). The kernel rows are libc mmap/munmap/mprotect.
/// </summary>
[MemoryDiagnoser]
public class MappingBenchmarks
{
    private const ulong Small = 64 * 1024;
    private const ulong Large = 64UL << 20;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _large;

    /// <summary>The path.</summary>
    [Params(BenchPath.MmapLock, BenchPath.Speculative, BenchPath.VmaLock, BenchPath.Kernel)]
    public BenchPath Path { get; set; }

    /// <summary>Maps and populates the large VMA.</summary>
    [GlobalSetup]
    public unsafe void Setup()
    {
        if (Path == BenchPath.Kernel)
        {
            _large = (ulong)LibC.MapAnonymousSmallPages(Large);
            for (ulong p = 0; p < Large; p += 4096)
            {
                *(long*)(_large + p) = 1;
            }
            return;
        }
        (_space, _cpu, _idle) = Spaces.Create(Path, (long)Large + (64L << 20));
        _large = _space.Map(0, Large, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        for (ulong p = 0; p < Large; p += 4096)
        {
            _cpu.Store(_large + p, 1L);
        }
    }

    /// <summary>mmap + munmap of 64 KiB, untouched.</summary>
    [Benchmark]
    public void MapUnmap() => Spaces.MapUnmapUntouched(_space, Small);

    /// <summary>mprotect of one resident page in a 64 MiB VMA to read-only and back (split, then merge).</summary>
    [Benchmark]
    public void ProtectPageInLargeVma()
    {
        ulong page = _large + Large / 2;
        if (_space is { } space)
        {
            space.Protect(page, 4096, Protection.Read);
            space.Protect(page, 4096, Protection.ReadWrite);
        }
        else
        {
            LibC.Mprotect((nint)page, 4096, Linux.PROT_READ);
            LibC.Mprotect((nint)page, 4096, Linux.PROT_READ | Linux.PROT_WRITE);
        }
    }

    /// <summary>Releases the memory.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        if (Path == BenchPath.Kernel)
        {
            LibC.Munmap((nint)_large, (nuint)Large);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
