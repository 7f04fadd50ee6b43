using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>pagemap_pmd_range</c> / <c>pte_to_pagemap_entry</c> as a walk over one VMA's part of a range: writes the
/// <c>/proc/pid/pagemap</c> entry of every page whose PTE is not empty (empty ones keep the hole value the caller
/// wrote, <c>pagemap_pte_hole</c>). Reads entries without the PTE lock, as the kernel's walk reads them under it only
/// to keep the table alive, which the mmap lock does here.
/// </summary>
internal unsafe struct PageMapVisitor : IPageRangeVisitor
{
    /// <summary><c>PM_PRESENT</c>.</summary>
    public const ulong Present = 1UL << 63;
    /// <summary><c>PM_SWAP</c>.</summary>
    public const ulong Swapped = 1UL << 62;
    /// <summary><c>PM_FILE</c>: a page that is not anonymous (page cache, shared anonymous memory).</summary>
    public const ulong FilePage = 1UL << 61;
    /// <summary><c>PM_UFFD_WP</c>: an entry a user-fault channel write-protected, or one the dirty log armed (the kernel's <c>PAGEMAP_SCAN</c> arms with the same bit).</summary>
    public const ulong WriteProtected = 1UL << 57;
    /// <summary><c>PM_MMAP_EXCLUSIVE</c>: the page is mapped once.</summary>
    public const ulong Exclusive = 1UL << 56;
    /// <summary><c>PM_SOFT_DIRTY</c>.</summary>
    public const ulong SoftDirty = 1UL << 55;
    /// <summary><c>PM_PFRAME_MASK</c>: bits 0-54, the frame number (or swap type and offset).</summary>
    public const ulong FrameMask = (1UL << 55) - 1;

    private readonly PhysicalMemory _memory;
    private readonly ulong* _output;
    private readonly ulong _outputBase;
    private readonly ulong _vmaFlags;
    private readonly bool _softDirty;
    private readonly bool _showFrames;

    /// <summary>
    /// A walk writing entry (page − <paramref name="outputBase"/>) of <paramref name="output"/>; <paramref name="vmaFlags"/>
    /// is ORed into every entry (the VMA's <c>VM_SOFTDIRTY</c> as <see cref="SoftDirty"/>), <paramref name="softDirty"/>
    /// says whether PTE soft-dirty bits are reported, <paramref name="showFrames"/> whether frame numbers are
    /// (<c>pm->show_pfn</c>, <c>CAP_SYS_ADMIN</c>).
    /// </summary>
    public PageMapVisitor(PhysicalMemory memory, ulong* output, ulong outputBase, ulong vmaFlags, bool softDirty, bool showFrames)
    {
        _memory = memory;
        _output = output;
        _outputBase = outputBase;
        _vmaFlags = vmaFlags;
        _softDirty = softDirty;
        _showFrames = showFrames;
    }

    /// <summary>Writes the entries of the PTEs that are not empty.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ulong* entries = (ulong*)_memory.FrameAddress(pteTable);
        ulong first = (tableBase >> PageGeometry.PageShift) - _outputBase;
        for (int i = firstIndex; i < endIndex; i++)
        {
            // Acquire load; pairs with the release store that installed the entry (its frame's metadata is set).
            ulong entry = Volatile.Read(ref entries[i]);
            if (entry != 0)
            {
                _output[first + (ulong)i] = Entry(entry, 0);
            }
        }
    }

    /// <summary><c>pagemap_pmd_range</c>'s huge branch: each page reports the huge frame plus its index.</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address) =>
        VisitHugePmdPart(pmdTable, pmdIndex, address, 0, PageGeometry.EntriesPerTable);

    /// <summary>The huge branch for the pages of the PMD inside the range.</summary>
    public void VisitHugePmdPart(long pmdTable, int pmdIndex, ulong address, int firstIndex, int endIndex)
    {
        // Acquire load; pairs with the release store that installed the huge PMD.
        ulong entry = Volatile.Read(ref ((ulong*)_memory.FrameAddress(pmdTable))[pmdIndex]);
        ulong first = (address >> PageGeometry.PageShift) - _outputBase;
        for (int i = firstIndex; i < endIndex; i++)
        {
            _output[first + (ulong)i] = Entry(entry, (ulong)i);
        }
    }

    private ulong Entry(ulong entry, ulong index)
    {
        ulong flags = _vmaFlags;
        if (!Pte.MapsFrame(entry))
        {
            // A swap entry: type in the low five bits, offset above them (make_pme of a swp_entry); soft-dirty and
            // uffd-wp from the entry's own bits (pte_swp_soft_dirty, pte_swp_uffd_wp).
            SwapEntry swap = SwapEntry.FromPte(entry);
            if (_softDirty && (entry & Pte.SwapSoftDirty) != 0)
            {
                flags |= SoftDirty;
            }
            if ((entry & Pte.SwapUffdWp) != 0)
            {
                flags |= WriteProtected;
            }
            return flags | Swapped | (((uint)swap.Type | ((ulong)swap.Offset << 5)) & FrameMask);
        }
        if (_softDirty && (entry & Pte.SoftDirty) != 0)
        {
            flags |= SoftDirty;
        }
        flags |= Present;
        if ((entry & (Pte.WriteTracked | Pte.UffdWp)) != 0)
        {
            flags |= WriteProtected;
        }
        long pfn = Pte.Frame(entry);
        if (_showFrames)
        {
            flags |= ((ulong)pfn + index) & FrameMask;
        }
        if ((entry & Pte.Special) == 0)
        {
            // vm_normal_page found a page (the zero frame has none): file or anonymous, and mapped once or not.
            ref FrameInfo info = ref _memory.Info(pfn);
            if (info.Kind != FrameKind.Anonymous)
            {
                flags |= FilePage;
            }
            // Acquire read; pairs with the Interlocked map-count changes of fault, zap and fork.
            if (Volatile.Read(ref info.MapCount) == 1)
            {
                flags |= Exclusive;
            }
        }
        return flags;
    }
}
