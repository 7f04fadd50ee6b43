using System.Runtime.InteropServices;
using Faultline.Host;

namespace Faultline.Cli.Paths;

/// <summary>
/// The host kernel as the reference: this process's own address space through libc, with real pointer accesses,
/// so each first touch is a real page fault. Transparent huge pages are disabled on every mapping (MADV_NOHUGEPAGE)
/// so the kernel faults 4 KiB pages, the same work Faultline does.
/// </summary>
internal sealed unsafe class KernelTarget : IMemoryTarget
{
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, Microsoft.Win32.SafeHandles.SafeFileHandle> _files = new();

    /// <inheritdoc />
    public PathKind Path => PathKind.Kernel;

    /// <inheritdoc />
    public ulong Map(ulong length, bool writable = true)
    {
        nint p = LibC.MapAnonymousSmallPages(length, writable);
        return (ulong)p;
    }

    /// <inheritdoc />
    public ulong MapHugePageAdvised(ulong length)
    {
        ulong extra = Linux.HPAGE_PMD_SIZE;
        nint raw = LibC.Mmap(0, (nuint)(length + extra), Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS, -1, 0);
        if (raw == -1)
        {
            throw new InvalidOperationException($"mmap({length}) failed, {LastError()}");
        }
        ulong start = (ulong)raw;
        ulong aligned = (start + extra - 1) & ~(extra - 1);
        if (aligned > start)
        {
            _ = LibC.Munmap(raw, (nuint)(aligned - start));
        }
        if (start + extra > aligned)
        {
            _ = LibC.Munmap((nint)(aligned + length), (nuint)(start + extra - aligned));
        }
        if (LibC.Madvise((nint)aligned, (nuint)length, Linux.MADV_HUGEPAGE) != 0)
        {
            throw new InvalidOperationException($"madvise(MADV_HUGEPAGE) failed, {LastError()}");
        }
        return aligned;
    }

    /// <inheritdoc />
    public void Unmap(ulong address, ulong length)
    {
        if (LibC.Munmap((nint)address, (nuint)length) != 0)
        {
            throw new InvalidOperationException($"munmap(0x{address:x}, {length}) failed, {LastError()}");
        }
    }

    /// <inheritdoc />
    public void Protect(ulong address, ulong length, bool writable)
    {
        int prot = Linux.PROT_READ | (writable ? Linux.PROT_WRITE : 0);
        if (LibC.Mprotect((nint)address, (nuint)length, prot) != 0)
        {
            throw new InvalidOperationException($"mprotect(0x{address:x}, {length}) failed, {LastError()}");
        }
    }

    private static string LastError() => $"errno {Marshal.GetLastPInvokeError()}";

    /// <inheritdoc />
    public ThreadMemory AttachThread() => new KernelThreadMemory();

    /// <inheritdoc />
    public IReadOnlyDictionary<string, long> SnapshotCounters()
    {
        Rusage u = LibC.Usage(LibC.RUSAGE_SELF);
        return new Dictionary<string, long>
        {
            ["ru_minflt"] = u.MinorFaults,
            ["ru_majflt"] = u.MajorFaults,
            ["ru_nvcsw"] = u.VoluntarySwitches,
            ["ru_nivcsw"] = u.InvoluntarySwitches,
        };
    }

    /// <inheritdoc />
    /// <remarks>The file is made in /dev/shm (tmpfs) and unlinked at once; its descriptor stays open.</remarks>
    public ulong MapFile(int worker, ulong length, bool shared, bool writable)
    {
        Microsoft.Win32.SafeHandles.SafeFileHandle file = _files.GetOrAdd(worker, static (w, size) =>
        {
            string path = System.IO.Path.Combine("/dev/shm", $"faultline-bench-{Environment.ProcessId}-{w}-{Guid.NewGuid():N}");
            Microsoft.Win32.SafeHandles.SafeFileHandle handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
            File.Delete(path);
            RandomAccess.SetLength(handle, (long)size);
            return handle;
        }, length);
        int prot = Linux.PROT_READ | (writable ? Linux.PROT_WRITE : 0);
        int error = LibC.MmapErrno(0, length, prot, shared ? Linux.MAP_SHARED : Linux.MAP_PRIVATE, (int)file.DangerousGetHandle(), 0,
            out ulong mapped);
        return error == 0 ? mapped : throw new InvalidOperationException($"mmap of a tmpfs file failed, errno {error}");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Microsoft.Win32.SafeHandles.SafeFileHandle file in _files.Values)
        {
            file.Dispose();
        }
    }
}

/// <summary>Raw pointer accesses to this process's memory.</summary>
internal sealed unsafe class KernelThreadMemory : ThreadMemory
{
    /// <inheritdoc />
    public override void StampPages(ulong address, long pages, long salt, int word = 0)
    {
        ulong offset = (ulong)word * sizeof(long);
        ulong end = address + ((ulong)pages << 12);
        for (ulong page = address; page < end; page += 4096)
        {
            *(long*)(page + offset) = Stamp.Of(page, salt);
        }
    }

    /// <inheritdoc />
    public override long VerifyPages(ulong address, long pages, long salt, out ulong firstBad, int word = 0)
    {
        long bad = 0;
        firstBad = 0;
        ulong offset = (ulong)word * sizeof(long);
        ulong end = address + ((ulong)pages << 12);
        for (ulong page = address; page < end; page += 4096)
        {
            if (Volatile.Read(ref *(long*)(page + offset)) != Stamp.Of(page, salt))
            {
                if (bad++ == 0)
                {
                    firstBad = page;
                }
            }
        }
        return bad;
    }

    /// <inheritdoc />
    public override void StoreLong(ulong address, long value) => *(long*)address = value;

    /// <inheritdoc />
    public override long LoadLong(ulong address) => Volatile.Read(ref *(long*)address);
}
