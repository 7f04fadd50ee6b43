namespace Faultline.Benchmarks;

/// <summary>What a benchmark runs on: a Faultline fault path, or the host kernel (raw pointers, libc calls).</summary>
public enum BenchPath
{
    /// <summary>Faultline, classic path.</summary>
    MmapLock,
    /// <summary>Faultline, speculative page faults.</summary>
    Speculative,
    /// <summary>Faultline, per-VMA locks.</summary>
    VmaLock,
    /// <summary>The host kernel.</summary>
    Kernel,
}

/// <summary>Address spaces for the benchmarks.</summary>
internal static class Spaces
{
    /// <summary>
    /// A Faultline address space on <paramref name="path"/>, with a Cpu for the benchmark thread and an idle second
    /// Cpu: with one user the speculative path would skip speculation (<c>spf_single_user</c>), as a single-threaded
    /// process does in the SPF series; two users measure the path itself.
    /// </summary>
    public static (AddressSpace Space, Cpu Cpu, Cpu Idle) Create(BenchPath path, long physicalBytes)
    {
        var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path switch
            {
                BenchPath.MmapLock => FaultPath.MmapLock,
                BenchPath.Speculative => FaultPath.Speculative,
                BenchPath.VmaLock => FaultPath.VmaLock,
                _ => throw new ArgumentOutOfRangeException(nameof(path)),
            },
            PhysicalMemoryBytes = physicalBytes,
        });
        return (space, space.AttachCpu(), space.AttachCpu());
    }
}
