using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// Removing a range of mappings (<c>do_vmi_align_munmap</c>: <c>vms_gather_munmap_vmas</c>, then
/// <c>vms_complete_munmap_vmas</c> with <c>unmap_region</c>): munmap and a MAP_FIXED mmap over existing mappings
/// share it.
/// </summary>
internal sealed class RegionUnmapper
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    // Scratch for the VMAs a call visits, reused so a call allocates nothing; guarded by the mmap write lock, which
    // every method using it requires (the editor keeps its own).
    private readonly List<Vma> _scratch = [];

    /// <summary>The unmapper of <paramref name="mm"/>, editing through <paramref name="editor"/>.</summary>
    public RegionUnmapper(MemoryDescriptor mm, VmaEditor editor)
    {
        _mm = mm;
        _editor = editor;
    }

    /// <summary>
    /// The VMA count after removing [start, end): VMAs inside go, a VMA straddling an edge keeps its outside part.
    /// Caller holds the mmap lock for write.
    /// </summary>
    public int CountAfterUnmap(ulong start, ulong end)
    {
        List<Vma> affected = _scratch;
        _mm.Tree.Intersecting(start, end, affected);
        int count = _mm.Tree.Count - affected.Count;
        foreach (Vma vma in affected)
        {
            count += (vma.Start < start ? 1 : 0) + (vma.End > end ? 1 : 0);
        }
        return count;
    }

    /// <summary>
    /// <c>vms_gather_munmap_vmas</c> meeting a sealed VMA in [start, end): true, after doing what Linux has done by then
    /// and does not undo: the first VMA, when it is not the sealed one and starts before <paramref name="start"/>, is
    /// split there (the parts are not merged back). False, changing nothing, when no VMA there is sealed. Caller holds
    /// the mmap lock for write.
    /// </summary>
    public bool RefuseSealed(ulong start, ulong end)
    {
        List<Vma> affected = _scratch;
        _mm.Tree.Intersecting(start, end, affected);
        int sealedAt = 0;
        while (sealedAt < affected.Count && (affected[sealedAt].Flags & VmFlags.Sealed) == 0)
        {
            sealedAt++;
        }
        if (sealedAt == affected.Count)
        {
            return false;
        }
        Vma first = affected[0];
        if (sealedAt > 0 && first.Start < start && _mm.Tree.Count < _mm.Settings.MaxMapCount && VmaEditor.MaySplitAt(first, start))
        {
            _editor.ReplaceFlags(first, start, end, first.Flags);
            _mm.Tree.Publish();
            _editor.EndWriteSections();
        }
        return true;
    }

    /// <summary>
    /// Detaches the VMAs over [start, end), re-attaches the parts outside it, publishes, then tears down PTEs and
    /// tables (<see cref="UnmapRegion"/>) and frees what they held. Caller holds the mmap lock for write; with
    /// <paramref name="downgrade"/> it holds it for read on return (munmap's <c>mmap_write_downgrade</c>, which also
    /// ends the VMA write locks).
    /// </summary>
    public void Unmap(ulong start, ulong end, bool downgrade)
    {
        MmuGather gather = UnmapGathered(start, end, downgrade);
        gather.FreeGathered();
        _mm.ReturnGather(gather);
    }

    /// <summary>
    /// <see cref="Unmap"/> without the freeing: returns the gather after its TLB flush, still holding the frame
    /// references and the unhooked tables. The caller drops the mmap lock, then calls
    /// <see cref="MmuGather.FreeGathered"/>, so that dropping the references (and clearing the freed frames) runs
    /// outside the lock instead of holding every other map and unmap back, and gives the gather back
    /// (<see cref="MemoryDescriptor.ReturnGather"/>). The caller keeps the arena alive until then
    /// (<see cref="Physical.PhysicalMemory.AddUser"/> under the lock).
    /// </summary>
    public MmuGather UnmapGathered(ulong start, ulong end, bool downgrade)
    {
        // vms_complete_munmap_vmas: the locked pages leave mm->locked_vm with their VMAs.
        _mm.Tree.Intersecting(start, end, _scratch);
        foreach (Vma vma in _scratch)
        {
            if ((vma.Flags & VmFlags.Locked) != 0)
            {
                _mm.LockedPages -= (long)((Math.Min(end, vma.End) - Math.Max(start, vma.Start)) >> PageGeometry.PageShift);
            }
        }
        _editor.DetachRange(start, end);
        _mm.Tree.Publish();
        ulong floor = _mm.Tree.FindLastStartingBelow(start)?.End ?? 0;
        ulong ceiling = _mm.Tree.FindFirstEndingAbove(end)?.Start ?? PageGeometry.TranslatedAddressEnd;
        _editor.EndWriteSections();
        if (downgrade)
        {
            _mm.MmapLock.DowngradeWrite();
            _mm.Probes.Hit(ProbePoint.UnmapDowngraded);
        }
        return UnmapRegion(start, end, floor, ceiling);
    }

    // unmap_region: zap the PTEs, free the tables no VMA covers any more (between the neighbours' floor and
    // ceiling), and flush the TLBs; the gathered frames and tables are safe to free once it returns.
    private MmuGather UnmapRegion(ulong start, ulong end, ulong floor, ulong ceiling)
    {
        MmuGather gather = _mm.RentGather();
        long unmapped = _mm.PageTable.Zap(start, end, gather, _mm.Probes);
        unmapped += _mm.PageTable.FreeTables(start, end, floor, ceiling, gather);
        _mm.SharedCounters.AddShared(VmEvent.AnonPages, -unmapped);
        _mm.SharedCounters.AddShared(VmEvent.ShmemPages, -gather.ShmemPagesUnmapped);
        gather.FlushTlb(_mm.Probes);
        return gather;
    }
}
