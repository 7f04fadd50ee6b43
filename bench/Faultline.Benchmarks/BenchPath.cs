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

    /// <summary>
    /// mprotect of one resident page to read-only and back (a split, then a merge): on <paramref name="space"/>, or
    /// through libc on the host when it is null.
    /// </summary>
    public static void ProtectSplitMerge(AddressSpace? space, ulong page)
    {
        if (space is not null)
        {
            space.Protect(page, PageGeometry.PageSize, Protection.Read);
            space.Protect(page, PageGeometry.PageSize, Protection.ReadWrite);
        }
        else
        {
            Faultline.Host.LibC.Mprotect((nint)page, PageGeometry.PageSize, Faultline.Host.Linux.PROT_READ);
            Faultline.Host.LibC.Mprotect((nint)page, PageGeometry.PageSize, Faultline.Host.Linux.PROT_READ | Faultline.Host.Linux.PROT_WRITE);
        }
    }

    /// <summary>
    /// mmap of one page, a first-touch write fault on it through <paramref name="cpu"/>, munmap: on
    /// <paramref name="space"/>, or through libc and a raw store on the host when it is null.
    /// </summary>
    public static unsafe void MapTouchUnmap(AddressSpace? space, Cpu? cpu)
    {
        if (space is not null)
        {
            ulong a = space.Map(0, PageGeometry.PageSize, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            cpu!.Store(a, 1L);
            space.Unmap(a, PageGeometry.PageSize);
        }
        else
        {
            nint a = Faultline.Host.LibC.Mmap(0, PageGeometry.PageSize, Faultline.Host.Linux.PROT_READ | Faultline.Host.Linux.PROT_WRITE,
                Faultline.Host.Linux.MAP_PRIVATE | Faultline.Host.Linux.MAP_ANONYMOUS, -1, 0);
            *(long*)a = 1;
            Faultline.Host.LibC.Munmap(a, PageGeometry.PageSize);
        }
    }
}
