using Faultline.Areas;

namespace Faultline.Mm;

/// <summary>
/// <c>get_unmapped_area</c> for an address space without MAP_FIXED (x86-64's <c>arch_get_unmapped_area_topdown</c>):
/// a free hint, else the highest gap below <c>mmap_base</c>, else the lowest gap above <c>mmap_min_addr</c>. The
/// <c>stack_guard_gap</c> below a grows-down VMA counts as taken (<c>vm_start_gap</c>), so no placement lands there.
/// Caller holds the mmap lock for write.
/// </summary>
internal sealed class UnmappedAreaSearch
{
    /// <summary>Linux's default <c>stack_guard_gap</c>: 256 pages kept free below a grows-down VMA.</summary>
    public const ulong StackGuardGap = 256UL << PageGeometry.PageShift;

    private readonly MemoryDescriptor _mm;

    /// <summary>The search over <paramref name="mm"/>'s writer version of the tree.</summary>
    public UnmappedAreaSearch(MemoryDescriptor mm) => _mm = mm;

    /// <summary>
    /// A free, page-aligned start for <paramref name="length"/> bytes (already page-aligned), preferring
    /// <paramref name="hint"/> (0: none), or null when no gap is big enough (ENOMEM).
    /// </summary>
    public ulong? Find(ulong hint, ulong length)
    {
        ulong low = PageGeometry.PageAlign(_mm.Settings.MmapMinAddress);
        hint &= ~PageGeometry.PageOffsetMask;
        if (hint != 0 && hint < _mm.Settings.MmapMinAddress)
        {
            hint = low;
        }
        if (hint != 0 && hint <= PageGeometry.TaskSize - length && IsFreeWithGuardGap(hint, length))
        {
            return hint;
        }
        return TopDown(length, low, Math.Min(_mm.Settings.MmapBase, PageGeometry.TaskSize))
            ?? BottomUp(length, low, PageGeometry.TaskSize);
    }

    /// <summary>
    /// The <c>MAP_32BIT</c> placement of x86-64's <c>arch_get_unmapped_area</c>: bottom-up between 1 GiB and 2 GiB
    /// (<c>find_start_end</c>, without the randomisation), a free hint only when it ends below 2 GiB; null (ENOMEM)
    /// when no gap there is big enough.
    /// </summary>
    public ulong? FindBelow2GiB(ulong hint, ulong length)
    {
        const ulong begin = 0x4000_0000, end = 0x8000_0000;
        if (length > end)
        {
            return null;
        }
        hint &= ~PageGeometry.PageOffsetMask;
        if (hint != 0 && hint < _mm.Settings.MmapMinAddress)
        {
            hint = PageGeometry.PageAlign(_mm.Settings.MmapMinAddress);
        }
        if (hint != 0 && end - length >= hint && IsFreeWithGuardGap(hint, length))
        {
            return hint;
        }
        return BottomUp(length, Math.Max(begin, PageGeometry.PageAlign(_mm.Settings.MmapMinAddress)), end);
    }

    /// <summary>
    /// <c>__thp_get_unmapped_area</c> for anonymous memory (file offset 0): a gap of <paramref name="length"/> plus one
    /// PMD, the start moved up to the next PMD boundary; a start already aligned moves up one whole PMD, to the top of
    /// the padded gap (top-down placement, <c>MMF_TOPDOWN</c>). Null when the padded search fails: the caller then
    /// searches for the plain length, as <c>thp_get_unmapped_area_vmflags</c> does.
    /// </summary>
    public ulong? FindPmdAligned(ulong length, bool below2GiB)
    {
        ulong padded = length + PageGeometry.PmdSize;
        if (padded < length || (below2GiB ? FindBelow2GiB(0, padded) : Find(0, padded)) is not ulong found)
        {
            return null;
        }
        ulong misalignment = (0 - found) & (PageGeometry.PmdSize - 1);
        return misalignment == 0 ? found + PageGeometry.PmdSize : found + misalignment;
    }

    /// <summary><c>vm_start_gap</c>: where a VMA's claim on the address space begins, its guard gap included.</summary>
    public static ulong StartGap(Vma vma) =>
        (vma.Flags & VmFlags.GrowsDown) == 0 ? vma.Start : vma.Start > StackGuardGap ? vma.Start - StackGuardGap : 0;

    // The hint check: the next VMA, guard gap included, starts at or after the end (find_vma, vm_start_gap).
    private bool IsFreeWithGuardGap(ulong start, ulong length) =>
        _mm.Tree.FindFirstEndingAbove(start) is not { } next || StartGap(next) >= start + length;

    // unmapped_area_topdown: a gap whose next VMA's guard gap reaches into the candidate is searched again below
    // that guard gap, so the limit falls with each retry.
    private ulong? TopDown(ulong length, ulong low, ulong high)
    {
        while (_mm.Tree.FindGapTopDown(length, low, high) is { } found)
        {
            if (_mm.Tree.FindFirstEndingAbove(found) is not { } next || StartGap(next) >= found + length)
            {
                return found;
            }
            high = StartGap(next);
        }
        return null;
    }

    // unmapped_area: a candidate cut by the next VMA's guard gap is searched again above that VMA.
    private ulong? BottomUp(ulong length, ulong low, ulong high)
    {
        while (_mm.Tree.FindGapBottomUp(length, low, high) is { } found)
        {
            if (_mm.Tree.FindFirstEndingAbove(found) is not { } next || StartGap(next) >= found + length)
            {
                return found;
            }
            low = next.End;
        }
        return null;
    }
}
