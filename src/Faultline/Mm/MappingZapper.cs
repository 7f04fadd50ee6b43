using Faultline.Areas;
using Faultline.Backing;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// One address space's side of <c>unmap_mapping_range</c>: zaps the entries of one of its VMAs over pages of a
/// page-cache backing (<c>zap_page_range_single</c>), with a gather on this address space's grace-period domain.
/// </summary>
/// <remarks>
/// Runs without this address space's mmap lock, under the backing's mapping lock: the VMA is linked, and a VMA is
/// unlinked (under that lock) before any table under it is freed, so the walk reads live tables, as a diagnostic walk
/// under the mmap read lock does. Thread-safe.
/// </remarks>
internal sealed class MappingZapper : IMappingZapper
{
    private readonly MemoryDescriptor _mm;

    /// <summary>The zapper of <paramref name="mm"/>.</summary>
    public MappingZapper(MemoryDescriptor mm) => _mm = mm;

    /// <inheritdoc />
    public void ZapMappedPages(object vma, ulong firstPageOffset, ulong endPageOffset)
    {
        var area = (Vma)vma;
        ulong start = area.Start + ((firstPageOffset - area.PageOffset) << PageGeometry.PageShift);
        ulong end = area.Start + ((endPageOffset - area.PageOffset) << PageGeometry.PageShift);
        var gather = new MmuGather(_mm.Memory, _mm.Rcu, _mm.GatherBatchLimit);
        long anonymous = _mm.PageTable.Zap(start, end, gather, _mm.Probes);
        _mm.SharedCounters.AddShared(VmEvent.AnonPages, -anonymous);
        _mm.SharedCounters.AddShared(VmEvent.ShmemPages, -gather.ShmemPagesUnmapped);
        gather.Finish(_mm.Probes);
    }

    /// <inheritdoc />
    public void CleanMappedPages(object vma, ulong firstPageOffset, ulong endPageOffset, object owner)
    {
        var area = (Vma)vma;
        ulong start = area.Start + ((firstPageOffset - area.PageOffset) << PageGeometry.PageShift);
        ulong end = area.Start + ((endPageOffset - area.PageOffset) << PageGeometry.PageShift);
        MmuGather gather = _mm.RentGather();
        var visitor = new MkCleanVisitor(_mm.PageTable, gather, owner);
        _mm.PageTable.Walker.Walk(start, end, ref visitor);
        // flush_tlb_page for each cleaned entry, batched: no Cpu stores through a writable translation after this.
        gather.Finish(_mm.Probes);
        _mm.ReturnGather(gather);
    }
}
