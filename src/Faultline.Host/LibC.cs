using System.Runtime.InteropServices;

namespace Faultline.Host;

/// <summary>
/// Thin P/Invoke layer over the glibc wrappers for the memory-management system calls.
/// The raw entry points mirror the C prototypes and leave errno in
/// <see cref="Marshal.GetLastPInvokeError"/>; the <c>*Errno</c> helpers return errno as a value
/// (0 on success) because the oracle tests compare error codes, and exceptions would only get in
/// the way of that.
/// </summary>
public static partial class LibC
{
    /// <summary>The value mmap/mremap return on failure ((void*)-1).</summary>
    public const nint MAP_FAILED = -1;

    /// <summary>Raw <c>mmap(2)</c>. Returns <see cref="MAP_FAILED"/> and sets the last P/Invoke error on failure.</summary>
    /// <param name="addr">Hint or fixed address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="prot">PROT_* bits.</param>
    /// <param name="flags">MAP_* bits.</param>
    /// <param name="fd">File descriptor, -1 for anonymous mappings.</param>
    /// <param name="offset">File offset.</param>
    /// <returns>The mapped address or <see cref="MAP_FAILED"/>.</returns>
    [LibraryImport("libc", EntryPoint = "mmap", SetLastError = true)]
    public static partial nint Mmap(nint addr, nuint length, int prot, int flags, int fd, long offset);

    /// <summary>Raw <c>munmap(2)</c>. Returns 0 or -1 (errno in the last P/Invoke error).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>0 or -1.</returns>
    [LibraryImport("libc", EntryPoint = "munmap", SetLastError = true)]
    public static partial int Munmap(nint addr, nuint length);

    /// <summary>Raw <c>mprotect(2)</c>. Returns 0 or -1 (errno in the last P/Invoke error).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="prot">PROT_* bits.</param>
    /// <returns>0 or -1.</returns>
    [LibraryImport("libc", EntryPoint = "mprotect", SetLastError = true)]
    public static partial int Mprotect(nint addr, nuint length, int prot);

    /// <summary>Raw <c>madvise(2)</c>. Returns 0 or -1 (errno in the last P/Invoke error).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="advice">MADV_* value.</param>
    /// <returns>0 or -1.</returns>
    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    public static partial int Madvise(nint addr, nuint length, int advice);

    /// <summary>
    /// Raw <c>mremap(2)</c>. glibc declares it variadic; on x86-64 SysV passing the fifth integer
    /// argument as a fixed parameter is ABI-compatible (the callee only reads %al to decide whether
    /// to spill vector registers, which is harmless).
    /// </summary>
    /// <param name="oldAddress">Start of the mapping to resize/move.</param>
    /// <param name="oldSize">Old size in bytes.</param>
    /// <param name="newSize">New size in bytes.</param>
    /// <param name="flags">MREMAP_* bits.</param>
    /// <param name="newAddress">Target address for MREMAP_FIXED.</param>
    /// <returns>The new address or <see cref="MAP_FAILED"/>.</returns>
    [LibraryImport("libc", EntryPoint = "mremap", SetLastError = true)]
    public static partial nint Mremap(nint oldAddress, nuint oldSize, nuint newSize, int flags, nint newAddress);

    /// <summary>Raw <c>process_vm_readv(2)</c> with caller-provided iovec arrays.</summary>
    /// <param name="pid">Target process.</param>
    /// <param name="localIov">Pointer to local iovec array.</param>
    /// <param name="liovcnt">Number of local iovecs.</param>
    /// <param name="remoteIov">Pointer to remote iovec array.</param>
    /// <param name="riovcnt">Number of remote iovecs.</param>
    /// <param name="flags">Must be 0.</param>
    /// <returns>Bytes transferred or -1.</returns>
    [LibraryImport("libc", EntryPoint = "process_vm_readv", SetLastError = true)]
    public static unsafe partial nint ProcessVmReadv(int pid, Iovec* localIov, nuint liovcnt, Iovec* remoteIov, nuint riovcnt, nuint flags);

    /// <summary>Raw <c>process_vm_writev(2)</c> with caller-provided iovec arrays.</summary>
    /// <param name="pid">Target process.</param>
    /// <param name="localIov">Pointer to local iovec array.</param>
    /// <param name="liovcnt">Number of local iovecs.</param>
    /// <param name="remoteIov">Pointer to remote iovec array.</param>
    /// <param name="riovcnt">Number of remote iovecs.</param>
    /// <param name="flags">Must be 0.</param>
    /// <returns>Bytes transferred or -1.</returns>
    [LibraryImport("libc", EntryPoint = "process_vm_writev", SetLastError = true)]
    public static unsafe partial nint ProcessVmWritev(int pid, Iovec* localIov, nuint liovcnt, Iovec* remoteIov, nuint riovcnt, nuint flags);

    /// <summary>Raw <c>getpid(2)</c>.</summary>
    /// <returns>The process id.</returns>
    [LibraryImport("libc", EntryPoint = "getpid")]
    public static partial int GetPid();

    /// <summary>
    /// Raw <c>prctl(2)</c> with all four optional arguments passed (variadic in glibc; see
    /// <see cref="Mremap"/> for why fixed parameters are ABI-compatible on x86-64).
    /// </summary>
    /// <param name="option">PR_* option.</param>
    /// <param name="arg2">Second argument.</param>
    /// <param name="arg3">Third argument.</param>
    /// <param name="arg4">Fourth argument.</param>
    /// <param name="arg5">Fifth argument.</param>
    /// <returns>Option-specific result, -1 on error.</returns>
    [LibraryImport("libc", EntryPoint = "prctl", SetLastError = true)]
    public static partial int Prctl(int option, nuint arg2, nuint arg3, nuint arg4, nuint arg5);

    /// <summary>mlock(2).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>0, or -1 with errno set.</returns>
    [LibraryImport("libc", EntryPoint = "mlock", SetLastError = true)]
    public static partial int Mlock(nint addr, nuint length);

    /// <summary>mlock2(2) (glibc 2.27).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="flags">MLOCK_* bits.</param>
    /// <returns>0, or -1 with errno set.</returns>
    [LibraryImport("libc", EntryPoint = "mlock2", SetLastError = true)]
    public static partial int Mlock2(nint addr, nuint length, uint flags);

    /// <summary>munlock(2).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>0, or -1 with errno set.</returns>
    [LibraryImport("libc", EntryPoint = "munlock", SetLastError = true)]
    public static partial int Munlock(nint addr, nuint length);

    /// <summary>mincore(2).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="vec">One byte per page.</param>
    /// <returns>0, or -1 with errno set.</returns>
    [LibraryImport("libc", EntryPoint = "mincore", SetLastError = true)]
    public static unsafe partial int Mincore(nint addr, nuint length, byte* vec);

    /// <summary>msync(2).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="flags">MS_* bits.</param>
    /// <returns>0, or -1 with errno set.</returns>
    [LibraryImport("libc", EntryPoint = "msync", SetLastError = true)]
    public static partial int Msync(nint addr, nuint length, int flags);

    /// <summary>syscall(2) with three arguments (mseal has no glibc wrapper before 2.41).</summary>
    /// <param name="number">System call number.</param>
    /// <param name="arg1">First argument.</param>
    /// <param name="arg2">Second argument.</param>
    /// <param name="arg3">Third argument.</param>
    /// <returns>The result, -1 with errno set on error.</returns>
    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    public static partial long Syscall3(long number, nuint arg1, nuint arg2, nuint arg3);

    /// <summary>x86-64 system call number of mseal (Linux 6.10).</summary>
    public const long SYS_mseal = 462;

    /// <summary><c>mlock</c> (or <c>mlock2</c> with flags) returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="flags">MLOCK_* bits; 0 calls plain mlock.</param>
    /// <returns>0 or the errno.</returns>
    public static int MlockErrno(ulong addr, ulong length, uint flags = 0)
        => (flags == 0 ? Mlock((nint)addr, (nuint)length) : Mlock2((nint)addr, (nuint)length, flags)) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>munlock</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>0 or the errno.</returns>
    public static int MunlockErrno(ulong addr, ulong length)
        => Munlock((nint)addr, (nuint)length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>mincore</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="vec">Receives one byte per page; must be large enough.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int MincoreErrno(ulong addr, ulong length, Span<byte> vec)
    {
        fixed (byte* p = vec)
        {
            return Mincore((nint)addr, (nuint)length, p) == 0 ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary><c>msync</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="flags">MS_* bits.</param>
    /// <returns>0 or the errno.</returns>
    public static int MsyncErrno(ulong addr, ulong length, int flags)
        => Msync((nint)addr, (nuint)length, flags) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>mseal</c> returning errno (0 on success; ENOSYS on a kernel before 6.10).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="flags">Must be 0.</param>
    /// <returns>0 or the errno.</returns>
    public static int MsealErrno(ulong addr, ulong length, ulong flags = 0)
        => Syscall3(SYS_mseal, (nuint)addr, (nuint)length, (nuint)flags) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary>Cached pid of this process (it never changes for a managed process; fork is unsupported).</summary>
    public static int Pid { get; } = GetPid();

    /// <summary><c>mmap</c> returning errno (0 on success) and the mapped address.</summary>
    /// <param name="addr">Hint or fixed address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="prot">PROT_* bits, passed verbatim.</param>
    /// <param name="flags">MAP_* bits, passed verbatim.</param>
    /// <param name="fd">File descriptor, -1 for anonymous mappings.</param>
    /// <param name="offset">File offset.</param>
    /// <param name="mapped">The address the kernel chose, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public static int MmapErrno(ulong addr, ulong length, int prot, int flags, int fd, long offset, out ulong mapped)
    {
        nint r = Mmap((nint)addr, (nuint)length, prot, flags, fd, offset);
        if (r == MAP_FAILED)
        {
            mapped = 0;
            return Marshal.GetLastPInvokeError();
        }

        mapped = (ulong)r;
        return 0;
    }

    /// <summary><c>munmap</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <returns>0 or the errno.</returns>
    public static int MunmapErrno(ulong addr, ulong length)
        => Munmap((nint)addr, (nuint)length) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>mprotect</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="prot">PROT_* bits, passed verbatim.</param>
    /// <returns>0 or the errno.</returns>
    public static int MprotectErrno(ulong addr, ulong length, int prot)
        => Mprotect((nint)addr, (nuint)length, prot) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>madvise</c> returning errno (0 on success).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="advice">MADV_* value.</param>
    /// <returns>0 or the errno.</returns>
    public static int MadviseErrno(ulong addr, ulong length, int advice)
        => Madvise((nint)addr, (nuint)length, advice) == 0 ? 0 : Marshal.GetLastPInvokeError();

    /// <summary><c>mremap</c> returning errno (0 on success) and the resulting address.</summary>
    /// <param name="oldAddress">Start of the mapping.</param>
    /// <param name="oldSize">Old size in bytes.</param>
    /// <param name="newSize">New size in bytes.</param>
    /// <param name="flags">MREMAP_* bits.</param>
    /// <param name="newAddress">Target for MREMAP_FIXED (ignored otherwise).</param>
    /// <param name="result">The mapping's address afterwards, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public static int MremapErrno(ulong oldAddress, ulong oldSize, ulong newSize, int flags, ulong newAddress, out ulong result)
    {
        nint r = Mremap((nint)oldAddress, (nuint)oldSize, (nuint)newSize, flags, (nint)newAddress);
        if (r == MAP_FAILED)
        {
            result = 0;
            return Marshal.GetLastPInvokeError();
        }

        result = (ulong)r;
        return 0;
    }

    /// <summary>
    /// Copies <paramref name="length"/> bytes from <paramref name="remoteAddr"/> in process
    /// <paramref name="pid"/> to <paramref name="localAddr"/> with a single iovec each.
    /// </summary>
    /// <param name="pid">Source process (our own pid to probe our own address space).</param>
    /// <param name="localAddr">Destination buffer address.</param>
    /// <param name="remoteAddr">Source address in the target process.</param>
    /// <param name="length">Byte count.</param>
    /// <param name="transferred">Bytes copied (may be short on a partial fault), 0 on error.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int ProcessVmReadvErrno(int pid, ulong localAddr, ulong remoteAddr, ulong length, out long transferred)
    {
        Iovec local = new((nint)localAddr, (nuint)length);
        Iovec remote = new((nint)remoteAddr, (nuint)length);
        nint r = ProcessVmReadv(pid, &local, 1, &remote, 1, 0);
        if (r < 0)
        {
            transferred = 0;
            return Marshal.GetLastPInvokeError();
        }

        transferred = r;
        return 0;
    }

    /// <summary>
    /// Copies <paramref name="length"/> bytes from <paramref name="localAddr"/> to
    /// <paramref name="remoteAddr"/> in process <paramref name="pid"/> with a single iovec each.
    /// </summary>
    /// <param name="pid">Target process (our own pid to probe our own address space).</param>
    /// <param name="localAddr">Source buffer address.</param>
    /// <param name="remoteAddr">Destination address in the target process.</param>
    /// <param name="length">Byte count.</param>
    /// <param name="transferred">Bytes copied (may be short on a partial fault), 0 on error.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int ProcessVmWritevErrno(int pid, ulong localAddr, ulong remoteAddr, ulong length, out long transferred)
    {
        Iovec local = new((nint)localAddr, (nuint)length);
        Iovec remote = new((nint)remoteAddr, (nuint)length);
        nint r = ProcessVmWritev(pid, &local, 1, &remote, 1, 0);
        if (r < 0)
        {
            transferred = 0;
            return Marshal.GetLastPInvokeError();
        }

        transferred = r;
        return 0;
    }

    /// <summary>
    /// Names an anonymous range via <c>prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME)</c>; maps then shows
    /// "[anon:name]". Passing null clears the name.
    /// </summary>
    /// <param name="addr">Start address.</param>
    /// <param name="length">Length in bytes.</param>
    /// <param name="name">The name (no brackets, no control characters), or null.</param>
    /// <returns>0 or the errno.</returns>
    public static unsafe int SetVmaAnonNameErrno(ulong addr, ulong length, string? name)
    {
        if (name is null)
        {
            return Prctl(Linux.PR_SET_VMA, Linux.PR_SET_VMA_ANON_NAME, (nuint)addr, (nuint)length, 0) == 0
                ? 0 : Marshal.GetLastPInvokeError();
        }

        byte[] bytes = new byte[System.Text.Encoding.UTF8.GetByteCount(name) + 1];
        System.Text.Encoding.UTF8.GetBytes(name, bytes);
        fixed (byte* p = bytes)
        {
            return Prctl(Linux.PR_SET_VMA, Linux.PR_SET_VMA_ANON_NAME, (nuint)addr, (nuint)length, (nuint)p) == 0
                ? 0 : Marshal.GetLastPInvokeError();
        }
    }

    /// <summary><c>RUSAGE_SELF</c>: the whole process.</summary>
    public const int RUSAGE_SELF = 0;

    /// <summary><c>RUSAGE_THREAD</c>: the calling thread.</summary>
    public const int RUSAGE_THREAD = 1;

    [LibraryImport("libc", EntryPoint = "getrusage", SetLastError = true)]
    private static unsafe partial int GetRusage(int who, Rusage* usage);

    /// <summary><c>getrusage</c> for <see cref="RUSAGE_SELF"/> or <see cref="RUSAGE_THREAD"/>.</summary>
    /// <param name="who">Whose usage.</param>
    /// <returns>The usage.</returns>
    public static unsafe Rusage Usage(int who)
    {
        Rusage usage;
        if (GetRusage(who, &usage) != 0)
        {
            throw new InvalidOperationException($"getrusage failed, errno {Marshal.GetLastPInvokeError()}");
        }
        return usage;
    }

    /// <summary>
    /// Private anonymous read-write (or read-only) memory without transparent huge pages, so every first touch is a
    /// 4 KiB page fault as in Faultline (the benchmarks' kernel anchor). Throws when mmap fails.
    /// </summary>
    /// <param name="length">Bytes.</param>
    /// <param name="writable">Read-write when true, read-only otherwise.</param>
    /// <returns>The address.</returns>
    public static nint MapAnonymousSmallPages(ulong length, bool writable = true)
    {
        nint p = Mmap(0, (nuint)length, Linux.PROT_READ | (writable ? Linux.PROT_WRITE : 0), Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
        {
            throw new InvalidOperationException($"mmap({length}) failed, errno {Marshal.GetLastPInvokeError()}");
        }
        // Failure is harmless: a kernel without THP faults small pages anyway.
        _ = Madvise(p, (nuint)length, Linux.MADV_NOHUGEPAGE);
        return p;
    }
}
