using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// <c>madvise_cold_or_pageout_pte_range</c>: <c>MADV_COLD</c> clears the Accessed bits of a range's private anonymous
/// pages and moves them to the inactive list (<c>folio_deactivate</c>), so reclaim takes them first;
/// <c>MADV_PAGEOUT</c> reclaims them now (<c>reclaim_pages</c>, references ignored). Pages mapped more than once (shared
/// with a forked relative) are left alone, as the kernel leaves <c>folio_maybe_mapped_shared</c> ones.
/// </summary>
/// <remarks>The caller holds the mmap lock for read and the range lies inside VMAs of the published tree.</remarks>
internal static class LruAdvice
{
    /// <summary>Applies the advice to [<paramref name="start"/>, <paramref name="end"/>).</summary>
    public static void Apply(MemoryDescriptor mm, MemoryNode node, ulong start, ulong end, bool pageOut)
    {
        PhysicalMemory memory = mm.Memory;
        FrameLru lru = memory.Lru!;
        Span<int> batch = stackalloc int[PageReclaim.Batch];
        int isolated = 0;
        for (ulong address = start; address < end; address += PageGeometry.PageSize)
        {
            long pfn = mm.PageTable.GetMappedFrame(address);
            if (pfn < 0)
            {
                continue;
            }
            // Acquire read; pairs with the Interlocked map-count changes of faults, fork and reclaim.
            if (memory.Info(pfn).Kind != FrameKind.Anonymous || Volatile.Read(ref memory.Info(pfn).MapCount) != 1)
            {
                memory.Put(pfn);
                continue;
            }
            if (!pageOut)
            {
                PageReclaim.ClearReferences(memory, pfn);
                lru.Deactivate(pfn);
                node.Counters.AddShared(VmEvent.Deactivate);
                memory.Put(pfn);
                continue;
            }
            bool taken = lru.TryIsolate(pfn);
            memory.Put(pfn);
            if (taken)
            {
                batch[isolated++] = (int)pfn;
            }
            if (isolated == batch.Length)
            {
                Reclaim(node, batch);
                isolated = 0;
            }
        }
        Reclaim(node, batch[..isolated]);
    }

    // reclaim_pages: a batch at a time, so one TLB flush covers up to SWAP_CLUSTER_MAX pages.
    private static void Reclaim(MemoryNode node, ReadOnlySpan<int> isolated)
    {
        if (isolated.Length > 0)
        {
            node.Counters.AddShared(VmEvent.StealDirect, PageReclaim.ReclaimBatch(node, isolated, ignoreReferences: true));
        }
    }
}
