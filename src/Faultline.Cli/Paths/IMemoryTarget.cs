namespace Faultline.Cli.Paths;

/// <summary>
/// One address space a workload runs in: Faultline's <see cref="AddressSpace"/> or this process's own (the host
/// kernel). Address-space operations (mmap, munmap, mprotect) are here and may be called from any thread; accesses go
/// through a per-thread <see cref="ThreadMemory"/>.
/// </summary>
internal interface IMemoryTarget : IDisposable
{
    /// <summary>The path.</summary>
    PathKind Path { get; }

    /// <summary><c>mmap(NULL, length, PROT_READ[|PROT_WRITE], MAP_PRIVATE|MAP_ANONYMOUS)</c>.</summary>
    ulong Map(ulong length, bool writable = true);

    /// <summary>
    /// <c>mmap</c> of <paramref name="length"/> (a multiple of 2 MiB) private anonymous read-write memory at a 2 MiB-aligned
    /// address, then <c>madvise(MADV_HUGEPAGE)</c>: every 2 MiB of it may be one huge page.
    /// </summary>
    ulong MapHugePageAdvised(ulong length);

    /// <summary><c>munmap</c>.</summary>
    void Unmap(ulong address, ulong length);

    /// <summary><c>mprotect</c> to read-only or read-write.</summary>
    void Protect(ulong address, ulong length, bool writable);

    /// <summary>An access context for the calling thread (a Faultline <see cref="Cpu"/>, or raw pointers).</summary>
    ThreadMemory AttachThread();

    /// <summary>The counters of the address space now (Faultline's vmstat names; for the kernel, getrusage fields).</summary>
    IReadOnlyDictionary<string, long> SnapshotCounters();

    /// <summary>
    /// <c>mmap(NULL, length, PROT_READ[|PROT_WRITE], MAP_SHARED or MAP_PRIVATE, fd, 0)</c> of worker
    /// <paramref name="worker"/>'s tmpfs file of <paramref name="length"/> bytes (made on first use and kept, with its
    /// cached pages, until the target is disposed: will-it-scale's per-task temporary file).
    /// </summary>
    ulong MapFile(int worker, ulong length, bool shared, bool writable);
}
