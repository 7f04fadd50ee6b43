using Faultline.Paging;

namespace Faultline.Mm;

/// <summary>
/// The walk shared by soft-dirty clearing, the dirty log and write watches: rewrites the entries of every VMA in a
/// range with one <see cref="WriteProtectVisitor"/> and flushes the TLBs once at the end (<c>flush_tlb_mm</c> after
/// <c>clear_refs</c>'s walk, <c>PAGEMAP_SCAN</c>'s one flush per call), so a Cpu that held a writable translation of
/// a page made read-only has finished its access and dropped the translation before the call returns.
/// </summary>
internal static unsafe class WriteTracking
{
    /// <summary>
    /// Rewrites [<paramref name="start"/>, <paramref name="end"/>) as <see cref="WriteProtectVisitor"/> describes,
    /// walking only the parts VMAs cover, and returns the pages reported written into <paramref name="bitmap"/> (bit 0
    /// is the page at <paramref name="start"/>; null for none). The caller holds the mmap lock (for read: the walk
    /// reads the tree as <c>find_vma</c> and tables under VMAs of the published tree stay).
    /// </summary>
    public static long Rewrite(MemoryDescriptor mm, ulong start, ulong end, ulong clear, ulong set, bool writeProtect, ulong* bitmap)
    {
        MmuGather gather = mm.RentGather();
        var visitor = new WriteProtectVisitor(mm.PageTable, gather, clear, set, writeProtect, bitmap, start >> PageGeometry.PageShift);
        ulong address = start;
        while (address < end && mm.Tree.FindFirstEndingAbove(address) is { } vma && vma.Start < end)
        {
            mm.PageTable.SplitHugePmdEdges(Math.Max(address, vma.Start), Math.Min(end, vma.End));
            mm.PageTable.Walker.Walk(Math.Max(address, vma.Start), Math.Min(end, vma.End), ref visitor);
            address = vma.End;
        }
        // One flush for the whole call: the generation bump names the range, so Cpus invalidate those pages (or
        // everything, for a large range) on their next access, and the grace period waits for accesses in flight.
        gather.Finish(mm.Probes);
        mm.ReturnGather(gather);
        return visitor.Written;
    }
}
