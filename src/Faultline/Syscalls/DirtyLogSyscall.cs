using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Syscalls;

/// <summary>
/// Get-and-clear of the dirty log (KVM's <c>KVM_GET_DIRTY_LOG</c> with manual protect, <c>PAGEMAP_SCAN</c> with
/// <c>PM_SCAN_WP_MATCHING</c> over <c>PAGE_IS_WRITTEN</c>): under the mmap read lock, each page of the range whose entry
/// was written since it was last armed (dirty and not <see cref="Pte.WriteTracked"/>) is reported, and every entry is
/// armed read-only with <see cref="Pte.WriteTracked"/> under its PTE lock; one TLB flush ends the call. A write racing
/// the call is reported by it (the entry was written before the arming, and the flush's grace period waits for a
/// store through a translation taken before it) or by the next call (the store faulted on the armed entry, which
/// clears the mark), never lost.
/// </summary>
internal sealed class DirtyLogSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;

    /// <summary>The dirty log over <paramref name="mm"/>.</summary>
    public DirtyLogSyscall(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
    }

    /// <summary>
    /// Reports into <paramref name="bitmap"/> (bit i of word i / 64 is the page at address + i pages; the words the range needs are cleared first)
    /// which pages of [address, address + length) were written, and re-arms them. EINVAL for an unaligned address or
    /// a range that wraps or leaves the user address space, EFAULT when the bitmap is too short. Pages no VMA covers,
    /// and pages not mapped, read as not written.
    /// </summary>
    public unsafe Errno GetAndClear(ulong address, ulong length, Span<ulong> bitmap, out long written)
    {
        written = 0;
        if ((address & PageGeometry.PageOffsetMask) != 0 || address + length < address || address + length > PageGeometry.UserAddressEnd)
        {
            return Errno.EINVAL;
        }
        ulong pages = (length + PageGeometry.PageOffsetMask) >> PageGeometry.PageShift;
        if ((ulong)bitmap.Length < (pages + 63) / 64)
        {
            return Errno.EFAULT;
        }
        bitmap[..(int)((pages + 63) / 64)].Clear();
        if (pages == 0)
        {
            return Errno.None;
        }
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            fixed (ulong* bits = bitmap)
            {
                written = WriteTracking.Rewrite(_mm, address, address + pages * PageGeometry.PageSize, clear: 0, set: Pte.WriteTracked,
                    writeProtect: true, bits);
            }
            return Errno.None;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }
}
