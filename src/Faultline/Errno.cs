namespace Faultline;

/// <summary>Linux error numbers returned by address-space operations (x86-64 values).</summary>
public enum Errno
{
    /// <summary>Success.</summary>
    None = 0,
    /// <summary><c>EPERM</c>: below <c>mmap_min_addr</c>, or not permitted.</summary>
    EPERM = 1,
    /// <summary><c>ENOENT</c>: a user-fault resolution outside a registered mapping (<c>UFFDIO_COPY</c> and kin).</summary>
    ENOENT = 2,
    /// <summary><c>EIO</c>: a guest file's page could not be read from or written back to its host file.</summary>
    EIO = 5,
    /// <summary><c>EBADF</c>: a file mapping without a file; a write to a guest file opened read-only, or to one disposed.</summary>
    EBADF = 9,
    /// <summary><c>EAGAIN</c>: over the lock limit (mmap with MAP_LOCKED, mlock's populate), or no memory to split a VMA in madvise.</summary>
    EAGAIN = 11,
    /// <summary><c>ENOMEM</c>: no room, outside the address space, too many mappings, range not mapped.</summary>
    ENOMEM = 12,
    /// <summary><c>EACCES</c>: protection not allowed by the mapping.</summary>
    EACCES = 13,
    /// <summary><c>EFAULT</c>: a populate that faulted (SIGSEGV or SIGBUS), a result buffer too small (mincore), or an mremap range not inside one mapping.</summary>
    EFAULT = 14,
    /// <summary><c>EBUSY</c>: <c>msync(MS_INVALIDATE)</c> of locked memory; a collapse whose huge page the memory group has no room for.</summary>
    EBUSY = 16,
    /// <summary><c>EEXIST</c>: <c>MAP_FIXED_NOREPLACE</c> over an existing mapping.</summary>
    EEXIST = 17,
    /// <summary><c>ENODEV</c>: a guest file mapped into an address space whose guest RAM does not hold its pages.</summary>
    ENODEV = 19,
    /// <summary><c>EINVAL</c>: misaligned, zero length, bad flags; a negative memory limit; a memory group of other guest RAM.</summary>
    EINVAL = 22,
    /// <summary><c>EFBIG</c>: a guest file over a host file grown past the host file system's largest file.</summary>
    EFBIG = 27,
    /// <summary><c>ENOSPC</c>: no more memory groups can be made over one guest RAM (<c>mkdir</c> past the cgroup limit).</summary>
    ENOSPC = 28,
    /// <summary><c>EOVERFLOW</c>: a mapping's last page offset would wrap.</summary>
    EOVERFLOW = 75,
    /// <summary><c>EOPNOTSUPP</c>: unknown flag with <c>MAP_SHARED_VALIDATE</c>.</summary>
    EOPNOTSUPP = 95,
}
