using Faultline.Areas;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// <c>msync</c> with Linux's checks and errno values. Anonymous memory (and any private mapping) has nothing to write
/// back, so the call only validates: the flags, the alignment, the mapped range, and MS_INVALIDATE against locked
/// VMAs; no state changes.
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
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            Errno unmapped = Errno.None;
            ulong start = address;
            // The msync loop: a hole is ENOMEM at the end (at once for plain MS_ASYNC); locked memory refuses MS_INVALIDATE.
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
                start = vma.End;
                if (start >= end)
                {
                    return unmapped;
                }
            }
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }
}
