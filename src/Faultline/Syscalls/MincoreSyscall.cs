using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mincore</c> (<c>do_mincore</c>, <c>mincore_pte_range</c>) with Linux's checks and errno values. Anonymous memory
/// is resident where a page table entry maps a frame (the zero frame and PROT_NONE entries count, as
/// <c>pte_present</c> says on x86); a page of a page-cache backing such as shared anonymous memory is resident where
/// its PTE maps it or where the backing caches it (<c>mincore_page</c>); the bytes of the VMAs before a hole are written before ENOMEM, as Linux copies
/// each VMA's part out before looking at the next.
/// </summary>
internal sealed class MincoreSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;

    /// <summary><c>mincore</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MincoreSyscall(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
    }

    /// <summary>Writes one byte per page of [address, address + length) into <paramref name="vector"/>.</summary>
    public Errno Mincore(ulong address, ulong length, Span<byte> vector)
    {
        if ((address & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        // access_ok(start, len): the range must lie below TASK_SIZE_MAX without wrapping.
        if (address + length < address || address + length > PageGeometry.TaskSize)
        {
            return Errno.ENOMEM;
        }
        ulong pages = (length >> PageGeometry.PageShift) + ((length & PageGeometry.PageOffsetMask) != 0 ? 1UL : 0);
        // access_ok(vec, pages): a result buffer too short is the caller's bad pointer.
        if ((ulong)vector.Length < pages)
        {
            return Errno.EFAULT;
        }
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            ulong page = address;
            for (ulong i = 0; i < pages; i++, page += PageGeometry.PageSize)
            {
                // Under the read lock the tables under a VMA of the published tree stay (see AddressSpace.IsResident).
                if (VmaTree.Containing(_mm.Tree.Published, page) is not { } vma)
                {
                    return Errno.ENOMEM;
                }
                bool resident = Pte.MapsFrame(_mm.PageTable.Lookup(page, _mm.Probes));
                if (!resident && vma.Backing is IPageCacheBacking cache)
                {
                    // __mincore_unmapped_range → mincore_page: an unmapped page of a file (shmem included) is resident
                    // when it is in the page cache, whatever this mapping's PTE says.
                    resident = cache.IsCached(vma.PageOffset + ((page - vma.Start) >> PageGeometry.PageShift));
                }
                vector[(int)i] = resident ? (byte)1 : (byte)0;
            }
            return Errno.None;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }
}
