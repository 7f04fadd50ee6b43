using Faultline.Areas;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Syscalls;

/// <summary>
/// <c>/proc/pid/pagemap</c> (<c>pagemap_read</c>): one 64-bit entry per page, under the mmap read lock, walking only
/// what VMAs cover. A page outside every VMA reads 0; an empty page of a VMA reads <c>PM_SOFT_DIRTY</c> when the VMA
/// has <c>VM_SOFTDIRTY</c> (<c>pagemap_pte_hole</c>), else 0; a mapped page reads as <see cref="PageMapVisitor"/> says,
/// with the VMA's <c>VM_SOFTDIRTY</c> ORed in (<c>pte_to_pagemap_entry</c>).
/// </summary>
internal sealed class PageMapSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;

    /// <summary>The reader over <paramref name="mm"/>.</summary>
    public PageMapSyscall(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
    }

    /// <summary>
    /// Fills <paramref name="entries"/> for the pages from <paramref name="address"/> on; EINVAL when it is not
    /// page-aligned. Pages at or above the end of the user address space read 0.
    /// </summary>
    public unsafe Errno Read(ulong address, Span<ulong> entries, bool showFrames)
    {
        if ((address & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        entries.Clear();
        ulong limit = PageGeometry.UserAddressEnd;
        if (address >= limit || entries.IsEmpty)
        {
            return Errno.None;
        }
        ulong end = address + Math.Min((ulong)entries.Length, (limit - address) >> PageGeometry.PageShift) * PageGeometry.PageSize;
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            fixed (ulong* output = entries)
            {
                ulong first = address >> PageGeometry.PageShift;
                ulong at = address;
                while (at < end && _mm.Tree.FindFirstEndingAbove(at) is { } vma && vma.Start < end)
                {
                    ulong from = Math.Max(at, vma.Start), to = Math.Min(end, vma.End);
                    ulong hole = _mm.Settings.SoftDirty && (vma.Flags & VmFlags.SoftDirty) != 0 ? PageMapVisitor.SoftDirty : 0;
                    if (hole != 0)
                    {
                        entries[(int)((from >> PageGeometry.PageShift) - first)..(int)((to >> PageGeometry.PageShift) - first)].Fill(hole);
                    }
                    var visitor = new PageMapVisitor(_mm.Memory, output, first, hole, _mm.Settings.SoftDirty, showFrames);
                    _mm.PageTable.Walker.Walk(from, to, ref visitor);
                    at = vma.End;
                }
            }
            return Errno.None;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }
}
