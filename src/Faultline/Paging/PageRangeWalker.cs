using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>walk_page_range</c> (<c>mm/pagewalk.c</c>) over one page table: visits every populated PTE table and huge PMD
/// intersecting a range, in address order, skipping empty upper levels a whole span at a time. Zap, change-protection
/// and the residency counts run on it.
/// </summary>
/// <remarks>
/// The walker reads upper-level entries without <c>page_table_lock</c>, so its caller must keep the tables under the
/// range from being freed: it holds mmap_lock for write, or for read with the range inside VMAs of the published
/// tree (munmap takes a VMA out of the tree before it frees the tables under it). Entries below are the visitor's
/// business, under whatever lock it needs.
/// </remarks>
internal readonly unsafe struct PageRangeWalker
{
    private const int EntriesPerTable = PageGeometry.EntriesPerTable;

    private readonly PhysicalMemory _memory;
    private readonly long _root;

    /// <summary>A walker over the table rooted at <paramref name="root"/> (the pgd frame).</summary>
    public PageRangeWalker(PhysicalMemory memory, long root)
    {
        _memory = memory;
        _root = root;
    }

    /// <summary>
    /// Walks [<paramref name="start"/>, <paramref name="end"/>). A huge PMD that the range covers only in part goes to
    /// <see cref="IPageRangeVisitor.VisitHugePmdPart"/>. Locking: see the type's remarks.
    /// </summary>
    public void Walk<TVisitor>(ulong start, ulong end, ref TVisitor visitor)
        where TVisitor : struct, IPageRangeVisitor
    {
        ulong address = start;
        while (address < end)
        {
            // Acquire loads of the upper levels: each pairs with the release store that installed the table below it
            // (EnsureTable, the speculative install), so a table seen here is seen zeroed or filled, never torn.
            ulong pgd = Volatile.Read(ref Entry(_root, IndexOf(address, PageGeometry.PgdShift)));
            if (pgd == 0)
            {
                address = NextBoundary(address, PageGeometry.PgdSize, end);
                continue;
            }
            ulong pud = Volatile.Read(ref Entry(Pte.Frame(pgd), IndexOf(address, PageGeometry.PudShift)));
            if (pud == 0)
            {
                address = NextBoundary(address, PageGeometry.PudSize, end);
                continue;
            }
            long pmdTable = Pte.Frame(pud);
            int pmdIndex = IndexOf(address, PageGeometry.PmdShift);
            ulong pmd = Volatile.Read(ref Entry(pmdTable, pmdIndex));
            ulong tableBase = address & ~(PageGeometry.PmdSize - 1);
            ulong next = NextBoundary(address, PageGeometry.PmdSize, end);
            if ((pmd & Pte.Huge) != 0)
            {
                if (address == tableBase && next == tableBase + PageGeometry.PmdSize)
                {
                    visitor.VisitHugePmd(pmdTable, pmdIndex, tableBase);
                }
                else
                {
                    int endIndex = next == tableBase + PageGeometry.PmdSize ? EntriesPerTable : IndexOf(next, PageGeometry.PageShift);
                    visitor.VisitHugePmdPart(pmdTable, pmdIndex, tableBase, IndexOf(address, PageGeometry.PageShift), endIndex);
                }
            }
            else if (pmd != 0)
            {
                int endIndex = next == tableBase + PageGeometry.PmdSize ? EntriesPerTable : IndexOf(next, PageGeometry.PageShift);
                visitor.VisitPteTable(Pte.Frame(pmd), IndexOf(address, PageGeometry.PageShift), endIndex, tableBase);
            }
            address = next;
        }
    }

    private ref ulong Entry(long table, int index) => ref ((ulong*)_memory.FrameAddress(table))[index];

    private static int IndexOf(ulong address, int shift) => (int)((address >> shift) & (EntriesPerTable - 1));

    // The start of the next span of `span` bytes, or `end` if that lies beyond it (or wraps past the top).
    private static ulong NextBoundary(ulong address, ulong span, ulong end)
    {
        ulong next = (address & ~(span - 1)) + span;
        return next < address || next > end ? end : next;
    }
}
