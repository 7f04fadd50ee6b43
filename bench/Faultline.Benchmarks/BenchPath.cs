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

    /// <summary>
    /// mmap (placed by the unmapped-area search) and munmap of <paramref name="length"/> untouched bytes: on
    /// <paramref name="space"/>, or through libc on the host when it is null (the kernel rows).
    /// </summary>
    public static void MapUnmapUntouched(AddressSpace? space, ulong length)
    {
        if (space is not null)
        {
            ulong a = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            space.Unmap(a, length);
        }
        else
        {
            nint a = Faultline.Host.LibC.Mmap(0, (nuint)length, Faultline.Host.Linux.PROT_READ | Faultline.Host.Linux.PROT_WRITE,
                Faultline.Host.Linux.MAP_PRIVATE | Faultline.Host.Linux.MAP_ANONYMOUS, -1, 0);
            Faultline.Host.LibC.Munmap(a, (nuint)length);
        }
    }
}
