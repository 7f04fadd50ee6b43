using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>change_pte_range</c> with <c>MM_CP_UFFD_WP</c> or <c>MM_CP_UFFD_WP_RESOLVE</c> (<c>uffd_wp_range</c>) as a walk:
/// sets <see cref="Pte.UffdWp"/> and clears the write bit of every entry mapping a frame, or clears the bit again and,
/// where <c>can_change_pte_writable</c> allows (<c>MM_CP_TRY_CHANGE_WRITABLE</c>), makes the entry writable. Notes
/// every translation it narrows in the gather. Huge PMDs are left alone (nothing creates one yet).
/// </summary>
internal unsafe struct UffdWpVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly PhysicalMemory _memory;
    private readonly bool _protect;
    private readonly bool _vmaMayWrite;
    private readonly MmuGather _gather;

    /// <summary>
    /// Protects (<paramref name="protect"/>) or resolves; <paramref name="vmaMayWrite"/>: the VMA is private and
    /// writable, so a resolved exclusive anonymous page may become writable in place.
    /// </summary>
    public UffdWpVisitor(PageTable table, bool protect, bool vmaMayWrite, MmuGather gather)
    {
        _table = table;
        _memory = table.Memory;
        _protect = protect;
        _vmaMayWrite = vmaMayWrite;
        _gather = gather;
    }

    /// <summary>Entries whose bit changed.</summary>
    public long Changed { get; private set; }

    /// <summary>Rewrites the entries under the table's PTE lock.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong entry = entries[i];
            if (Pte.IsSwap(entry))
            {
                // pte_swp_mkuffd_wp / pte_swp_clear_uffd_wp: the protection travels with the swapped-out page.
                ulong marked = _protect ? entry | Pte.SwapUffdWp : entry & ~Pte.SwapUffdWp;
                if (marked != entry)
                {
                    Volatile.Write(ref entries[i], marked);
                    Changed++;
                }
                continue;
            }
            if (!Pte.MapsFrame(entry))
            {
                continue;
            }
            ulong updated = _protect ? (entry | Pte.UffdWp) & ~Pte.Writable : entry & ~Pte.UffdWp;
            if (!_protect && _vmaMayWrite && Pte.IsPresent(entry) && (entry & Pte.Special) == 0
                && _memory.IsExclusiveAnonymous(Pte.Frame(entry)))
            {
                updated |= Pte.Writable;
            }
            if (updated == entry)
            {
                continue;
            }
            Volatile.Write(ref entries[i], updated);
            Changed++;
            if ((entry & Pte.Writable) != 0 && (updated & Pte.Writable) == 0)
            {
                _gather.NoteTranslationChange(tableBase + ((ulong)i << PageGeometry.PageShift));
            }
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>Huge PMDs are not write-protected for a channel (no THP yet).</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
    }
}
