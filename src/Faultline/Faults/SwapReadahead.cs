using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Faults;

/// <summary>
/// VMA-based swap readahead (the kernel's <c>swap_vma_readahead</c>): after a swap-in read, the swap entries of the
/// pages around the faulting address, inside its VMA and its PTE table, are read into the swap cache too, so the faults
/// that follow a sequential sweep find their pages cached (no I/O, and the speculative path can map them). The window
/// adapts as <c>__swapin_nr_pages</c> does: it opens to the next power of two above the hits (readahead pages a fault
/// then found in the cache) plus two, up to <c>1 &lt;&lt; page_cluster</c> pages, and shrinks at most by half a fault;
/// with no hits it reads only when the fault is next to the previous one.
/// </summary>
/// <remarks>
/// The per-VMA state is <see cref="Vma.SwapReadaheadInfo"/> (<c>vma-&gt;swap_readahead_info</c>): the last faulting
/// page, the window and the hits packed in one word. It is a hint: racing updates may lose a hit or a window, never
/// correctness, and a speculative fault may write it on a VMA a writer is replacing (the object stays valid managed
/// memory; its next user reinitialises the word).
/// </remarks>
internal static class SwapReadahead
{
    // The packing of vma->swap_readahead_info: the page address, then the window in bits 6-11, the hits in bits 0-5.
    private const int WindowShift = PageGeometry.PageShift / 2;
    private const ulong FieldMask = (1UL << WindowShift) - 1;
    private const int MaxHits = (int)FieldMask;

    /// <summary>
    /// <c>swap_cache_get_folio</c>'s bookkeeping for a fault that found <paramref name="pfn"/> in the swap cache: a frame
    /// read ahead and not yet used counts as a hit (once: the flag is cleared), and the VMA remembers this address.
    /// </summary>
    public static void NoteCacheHit(ref FaultContext fault, PhysicalMemory memory, int pfn)
    {
        // Atomic test-and-clear: two faults on one readahead frame count one hit.
        bool readahead = (Interlocked.And(ref memory.Info(pfn).Flags, ~(int)FrameFlags.Readahead) & (int)FrameFlags.Readahead) != 0;
        Vma? vma = fault.Vma;
        if (vma is null)
        {
            return;
        }
        ulong info = Volatile.Read(ref vma.SwapReadaheadInfo);
        int hits = Hits(info);
        if (readahead)
        {
            hits = Math.Min(hits + 1, MaxHits);
            fault.Mm.Node?.Counters.AddShared(VmEvent.SwapReadaheadHit);
        }
        Volatile.Write(ref vma.SwapReadaheadInfo, Pack(fault.Address, Window(info), hits));
    }

    /// <summary>
    /// Reads the swap entries around the fault's address into the swap cache, after the fault read its own page. Runs on
    /// the classic path only (it reads the area), with the mmap read lock or the VMA read lock held: the PTE table and the
    /// VMA's bounds stay as they are, the entries themselves may change, and each slot's cache claim decides.
    /// </summary>
    public static void ReadAround(ref FaultContext fault, SwapDevice device)
    {
        MemoryDescriptor mm = fault.Mm;
        Vma vma = fault.Vma!;
        int maxWindow = mm.Node!.Settings.ReadaheadPages;
        if (maxWindow <= 1 || !fault.HasPteTable)
        {
            return;
        }
        ulong page = fault.Address >> PageGeometry.PageShift;
        ulong info = Volatile.Read(ref vma.SwapReadaheadInfo);
        ulong previous = info >> PageGeometry.PageShift;
        int window = NextWindow(previous, page, Hits(info), maxWindow, Window(info));
        Volatile.Write(ref vma.SwapReadaheadInfo, Pack(fault.Address, window, 0));
        if (window == 1)
        {
            return;
        }
        // swap_ra_info: ahead of a forward sweep, behind a backward one, centred otherwise; clipped to the VMA and the PTE table.
        ulong left, right;
        if (page == previous + 1)
        {
            (left, right) = (page, page + (ulong)window);
        }
        else if (previous == page + 1)
        {
            (left, right) = (page + 1 - (ulong)window, page + 1);
        }
        else
        {
            ulong before = (ulong)(window - 1) / 2;
            (left, right) = (page - before, page + (ulong)window - before);
        }
        ulong tableFirst = page & ~(ulong)(PageGeometry.EntriesPerTable - 1);
        ulong start = Math.Max(Math.Max(left, vma.Start >> PageGeometry.PageShift), tableFirst);
        ulong end = Math.Min(Math.Min(right, vma.End >> PageGeometry.PageShift), tableFirst + PageGeometry.EntriesPerTable);
        PteLocation at = fault.Location;
        for (ulong other = start; other < end; other++)
        {
            if (other == page)
            {
                continue;
            }
            at.PteIndex = (int)(other - tableFirst);
            if (!ReadOne(ref fault, device, mm.PageTable.ReadPte(at), other))
            {
                return;
            }
        }
    }

    // __read_swap_cache_async for one neighbour: false when readahead should stop. It never takes the arena below its
    // low watermark: a neighbour nobody asked for yet must not make the next fault (this Cpu's or another's) pay direct
    // reclaim for its frame.
    private static bool ReadOne(ref FaultContext fault, SwapDevice device, ulong pte, ulong page)
    {
        if (!Pte.IsSwap(pte))
        {
            return true;
        }
        PhysicalMemory memory = fault.Mm.Memory;
        if (memory.FreeFrames <= memory.LowWatermark)
        {
            return false;
        }
        SwapEntry entry = SwapEntry.FromPte(pte);
        if (entry.IsNonSwap || entry.Type != device.Type || !device.TryClaimCache(entry.Offset))
        {
            // Another area, a marker, a slot already cached or being read, or freed since the PTE was read.
            return true;
        }
        MemoryDescriptor mm = fault.Mm;
        int pfn = fault.Cpu.Frames.Allocate();
        if (pfn == PhysicalMemory.NoFrame)
        {
            device.ReleaseCache(entry.Offset);
            return false;
        }
        // Charged to the faulting group like the fault's own page; over the limit, readahead stops (no OOM for pages
        // nobody asked for yet), before the frame joins a list.
        if (mm.Group is { } group && !group.TryCharge(pfn, 1, FrameKind.Anonymous))
        {
            fault.Cpu.Frames.Release(pfn);
            device.ReleaseCache(entry.Offset);
            return false;
        }
        // workingset_refault: a page read back from swap is a refault wherever the read came from.
        mm.Group?.Count(ChargeEvent.RefaultAnon);
        device.Area.Read(entry.Offset, memory.PrepareFill(pfn));
        ref FrameInfo info = ref memory.Info(pfn);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 0;
        // As for the fault's own page: the family's oldest anon_vma reaches every VMA that may map the entry.
        info.Mapping = fault.Vma!.AnonVma!.Root;
        info.Index = fault.Vma.PageOffset + (page - (fault.Vma.Start >> PageGeometry.PageShift));
        info.SwapEntry = entry.ToPte();
        memory.SetFlags(pfn, FrameFlags.SwapCache | FrameFlags.Uptodate | FrameFlags.Readahead);
        mm.Probes.Hit(ProbePoint.SwapReadaheadBeforeInsert);
        device.InsertCache(memory, entry.Offset, pfn);
        memory.Lru?.Add(pfn, active: false);
        mm.Node!.Counters.AddShared(VmEvent.SwapIn);
        mm.Node.Counters.AddShared(VmEvent.SwapReadahead);
        // The cache holds its own reference now; ours goes. If the last entry naming the slot went while we read
        // (free_swap_and_cache found no frame to drop yet), drop it here: the insert and that count's decrement are both
        // full fences, so one of the two sides sees the other.
        SwapSpace swap = mm.Node.Swap;
        if (device.UseCount(entry.Offset) == 0 && swap.TryLock(pfn))
        {
            swap.FreeIfUnused(pfn);
            swap.UnlockAndFreeIfUnused(pfn);
        }
        memory.Put(pfn);
        return true;
    }

    // __swapin_nr_pages.
    private static int NextWindow(ulong previousPage, ulong page, int hits, int maxWindow, int previousWindow)
    {
        int pages = hits + 2;
        if (pages == 2)
        {
            if (page != previousPage + 1 && page + 1 != previousPage)
            {
                pages = 1;
            }
        }
        else
        {
            int roundUp = 4;
            while (roundUp < pages)
            {
                roundUp <<= 1;
            }
            pages = roundUp;
        }
        pages = Math.Min(pages, maxWindow);
        // Don't shrink readahead too fast.
        return Math.Max(pages, previousWindow / 2);
    }

    private static ulong Pack(ulong address, int window, int hits) =>
        (address & ~PageGeometry.PageOffsetMask) | ((uint)window << WindowShift) | (uint)hits;

    private static int Window(ulong info) => (int)((info >> WindowShift) & FieldMask);

    private static int Hits(ulong info) => (int)(info & FieldMask);
}
