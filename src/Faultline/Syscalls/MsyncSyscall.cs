using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// <c>msync</c> with Linux's checks and errno values: the flags, the alignment, the mapped range, and MS_INVALIDATE
/// against locked VMAs. MS_SYNC writes back the shared file mappings of the range (<c>vfs_fsync_range</c>); anonymous
/// memory and private mappings have nothing to write back, and MS_ASYNC and MS_INVALIDATE change nothing (Linux since
/// 2.6.19 leaves dirty pages to the flusher and keeps the page cache coherent without invalidation).
/// </summary>
internal sealed class MsyncSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;

    /// <summary><c>msync</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MsyncSyscall(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
    }

    /// <summary>Checks [address, address + length) as <c>msync</c> does.</summary>
    public Errno Msync(ulong address, ulong length, SyncFlags flags)
    {
        if ((flags & ~(SyncFlags.Async | SyncFlags.Invalidate | SyncFlags.Sync)) != 0
            || (address & PageGeometry.PageOffsetMask) != 0
            || (flags & (SyncFlags.Async | SyncFlags.Sync)) == (SyncFlags.Async | SyncFlags.Sync))
        {
            return Errno.EINVAL;
        }
        ulong end = address + PageGeometry.PageAlign(length);
        if (end < address)
        {
            return Errno.ENOMEM;
        }
        if (end == address)
        {
            return Errno.None;
        }
        var files = new List<(FileBacking File, ulong First, ulong End)>();
        Errno checkedResult;
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            checkedResult = Walk(address, end, flags, files);
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
        // The msync loop's vfs_fsync_range runs with the mmap lock dropped and the file held (get_file/fput); the
        // first writeback error is the answer, as the loop returns it at once.
        Errno result = checkedResult;
        foreach ((FileBacking file, ulong first, ulong last) in files)
        {
            if (result == checkedResult)
            {
                Errno written = file.Cache.SyncRange(first, last);
                result = written != Errno.None ? written : result;
            }
            file.Unhold();
        }
        return result;
    }

    // The msync loop under the mmap read lock: a hole is ENOMEM at the end (at once for plain MS_ASYNC); locked memory
    // refuses MS_INVALIDATE; each shared file mapping met before the answer is noted, held, for MS_SYNC's writeback.
    private Errno Walk(ulong address, ulong end, SyncFlags flags, List<(FileBacking File, ulong First, ulong End)> files)
    {
        Errno unmapped = Errno.None;
        ulong start = address;
        while (true)
        {
            if (_mm.Tree.FindFirstEndingAbove(start) is not { } vma)
            {
                return Errno.ENOMEM;
            }
            if (start < vma.Start)
            {
                if (flags == SyncFlags.Async)
                {
                    return Errno.ENOMEM;
                }
                start = vma.Start;
                if (start >= end)
                {
                    return Errno.ENOMEM;
                }
                unmapped = Errno.ENOMEM;
            }
            if ((flags & SyncFlags.Invalidate) != 0 && (vma.Flags & VmFlags.Locked) != 0)
            {
                return Errno.EBUSY;
            }
            if ((flags & SyncFlags.Sync) != 0 && (vma.Flags & VmFlags.Shared) != 0 && vma.Backing is FileBacking file)
            {
                ulong first = vma.PageOffset + ((start - vma.Start) >> PageGeometry.PageShift);
                ulong last = vma.PageOffset + ((Math.Min(end, vma.End) - vma.Start) >> PageGeometry.PageShift);
                file.Hold();
                files.Add((file, first, last));
            }
            start = vma.End;
            if (start >= end)
            {
                return unmapped;
            }
        }
    }
}
