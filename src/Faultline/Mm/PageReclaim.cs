using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// Anonymous page reclaim (<c>mm/vmscan.c</c>): <c>shrink_node</c> over the arena's LRU lists, with
/// <c>shrink_active_list</c> ageing pages by their Accessed bits and <c>shrink_folio_list</c> reclaiming what stayed
/// unreferenced: <c>add_to_swap</c>, <c>try_to_unmap</c> through the reverse map (every PTE becomes the swap entry, the
/// TLBs are flushed), <c>pageout</c> of a dirty page, and <c>__remove_mapping</c>, which frees the frame unless a
/// lockless lookup took a reference meanwhile. <c>MADV_FREE</c> pages that stayed clean are discarded instead.
/// </summary>
/// <remarks>
/// Runs on the background reclaimer, on a faulting thread (direct reclaim) or in <c>MADV_PAGEOUT</c>, holding no
/// lock of any address space beyond what the caller holds (at most an mmap read lock). A frame is worked on isolated
/// (off the lists, one reference held) and locked (<see cref="FrameFlags.Locked"/>, as the kernel's folio lock), so
/// <c>free_swap_and_cache</c> and a swap-in leave its cache state to the reclaimer. Huge and pinned frames are skipped.
/// </remarks>
internal static class PageReclaim
{
    /// <summary><c>SWAP_CLUSTER_MAX</c>: frames isolated and reclaimed at a time.</summary>
    public const int Batch = 32;

    private enum Verdict
    {
        Freed,
        Keep,
        Activate,
    }

    /// <summary>
    /// <c>shrink_node</c>: reclaims from every group's lists in turn (<c>shrink_node_memcgs</c>, starting where the last
    /// call left off) until <paramref name="target"/> frames were freed or each list was looked at twice. Returns the
    /// frames freed.
    /// </summary>
    public static int Shrink(MemoryNode node, int target, bool direct)
    {
        int lruvecs = node.Memory.LruvecCount;
        int start = node.NextLruvec(lruvecs);
        int freed = 0;
        for (int i = 0; i < lruvecs && freed < target; i++)
        {
            freed += ShrinkLruvec(node, (start + i) % lruvecs, target - freed, direct);
        }
        return freed;
    }

    /// <summary>
    /// <c>shrink_lruvec</c>: reclaims from one group's lists (<paramref name="lruvec"/>) until <paramref name="target"/>
    /// frames were freed or every page on them was looked at twice. Under a group's limit
    /// (<c>try_to_free_mem_cgroup_pages</c>) only that group's list is scanned, so no other group loses a page to it.
    /// Returns the frames freed.
    /// </summary>
    public static int ShrinkLruvec(MemoryNode node, int lruvec, int target, bool direct)
    {
        FrameLru lru = node.Memory.Lru!;
        Span<int> batch = stackalloc int[Batch];
        int freed = 0;
        long budget = 2 * (lru.InactiveCount(lruvec) + lru.ActiveCount(lruvec)) + Batch;
        while (freed < target && budget > 0)
        {
            if (lru.InactiveCount(lruvec) <= lru.ActiveCount(lruvec))
            {
                // inactive_is_low: age a batch of the active list first.
                budget -= ShrinkActive(node, lruvec, batch);
            }
            int isolated = lru.Isolate(lruvec, active: false, batch, out int scanned);
            budget -= Math.Max(1, scanned);
            node.Counters.AddShared(direct ? VmEvent.ScanDirect : VmEvent.ScanKswapd, scanned);
            if (isolated == 0 && lru.ActiveCount(lruvec) == 0)
            {
                break;
            }
            int stolen = ReclaimBatch(node, batch[..isolated], ignoreReferences: false);
            node.Counters.AddShared(direct ? VmEvent.StealDirect : VmEvent.StealKswapd, stolen);
            freed += stolen;
        }
        return freed;
    }

    /// <summary>
    /// <c>shrink_folio_list</c> over isolated frames (the caller's isolation references are consumed): returns the frames
    /// freed. <paramref name="ignoreReferences"/> is <c>MADV_PAGEOUT</c>'s <c>reclaim_pages</c>. The TLB flush after
    /// unmapping is batched as the kernel's <c>TTU_BATCH_FLUSH</c> does: every frame of the batch is unmapped first, then
    /// one grace period per address space covers them all (<c>try_to_unmap_flush</c>), then the frames are paged out.
    /// </summary>
    public static int ReclaimBatch(MemoryNode node, ReadOnlySpan<int> frames, bool ignoreReferences)
    {
        Debug.Assert(frames.Length <= Batch, "a batch is at most SWAP_CLUSTER_MAX frames");
        var candidates = new Candidate[frames.Length];
        var unmapped = new List<Unmapped>();
        for (int i = 0; i < frames.Length; i++)
        {
            // The isolation's reference keeps the frame, and so its charge, until the batch is done with it.
            ChargeGroup? group = node.Memory.Info(frames[i]).Charge;
            group?.Count(ChargeEvent.Scan);
            candidates[i] = Prepare(node, frames[i], ignoreReferences, unmapped);
            candidates[i].Group = group;
        }
        FlushAndRelease(node.Memory, unmapped);
        int freed = 0;
        foreach (ref Candidate candidate in candidates.AsSpan())
        {
            if (candidate.Verdict is null)
            {
                candidate.Verdict = Finish(node, ref candidate);
            }
            if (Conclude(node, candidate))
            {
                freed++;
                candidate.Group?.Count(ChargeEvent.Steal);
            }
        }
        return freed;
    }

    // A frame on its way through shrink_folio_list: what the first half (up to try_to_unmap) decided or left to decide.
    private struct Candidate
    {
        public int Pfn;
        // Null while the page-out half is still to run; else the verdict, and whether the frame is locked.
        public Verdict? Verdict;
        public bool Locked;
        public bool Lazy;
        public SwapEntry Entry;
        public bool Clean;
        public bool MemoryLocked;
        // The memory group charged for the frame when the batch took it (memory.stat's pgscan, pgsteal).
        public ChargeGroup? Group;
    }

    // One PTE try_to_unmap cleared: its address space, its page, and the frame whose mapping reference it held.
    private readonly record struct Unmapped(MemoryDescriptor Mm, ulong Page, int Pfn);

    // The first half of shrink_folio_list for one frame: the checks, the lock, folio_referenced, add_to_swap and
    // try_to_unmap, whose TLB flush is left to the batch.
    private static Candidate Prepare(MemoryNode node, int pfn, bool ignoreReferences, List<Unmapped> unmapped)
    {
        PhysicalMemory memory = node.Memory;
        ref FrameInfo info = ref memory.Info(pfn);
        if (info.Kind != FrameKind.Anonymous || memory.HasFlags(pfn, FrameFlags.HugeHead) || memory.HasFlags(pfn, FrameFlags.HugeTail)
            || memory.IsPinned(pfn))
        {
            // folio_maybe_dma_pinned: a device may be using the memory behind every page table; THP is reclaimed elsewhere.
            return new Candidate { Pfn = pfn, Verdict = Verdict.Activate };
        }
        if (!node.Swap.TryLock(pfn))
        {
            return new Candidate { Pfn = pfn, Verdict = Verdict.Keep };
        }
        var candidate = new Candidate { Pfn = pfn, Locked = true };
        SwapSpace swap = node.Swap;
        if (!ignoreReferences && ClearReferences(memory, pfn) > 0)
        {
            candidate.Verdict = Verdict.Activate;
            return candidate;
        }
        candidate.Lazy = memory.HasFlags(pfn, FrameFlags.LazyFree) && !memory.HasFlags(pfn, FrameFlags.SwapCache);
        if (!candidate.Lazy)
        {
            if (memory.HasFlags(pfn, FrameFlags.SwapCache))
            {
                candidate.Entry = SwapEntry.FromPte(memory.Info(pfn).SwapEntry);
            }
            else
            {
                // add_to_swap: a slot, the frame in the swap cache under it, dirty so the page-out writes it.
                if (!swap.TryAllocate(out candidate.Entry))
                {
                    candidate.Verdict = Verdict.Activate;
                    return candidate;
                }
                memory.Info(pfn).SwapEntry = candidate.Entry.ToPte();
                memory.SetFlags(pfn, FrameFlags.SwapCache | FrameFlags.Dirty);
                swap.DeviceOf(candidate.Entry)!.InsertCache(memory, candidate.Entry.Offset, pfn);
            }
        }
        candidate.Clean = TryToUnmap(node, pfn, candidate.Lazy ? 0 : candidate.Entry.ToPte(), swap.DeviceOf(candidate.Entry),
            unmapped, out candidate.MemoryLocked);
        return candidate;
    }

    // The second half, after the batch's flush: no Cpu can reach the frame through a PTE this reclaim cleared.
    private static Verdict Finish(MemoryNode node, ref Candidate candidate)
    {
        PhysicalMemory memory = node.Memory;
        int pfn = candidate.Pfn;
        if (!candidate.Clean || candidate.MemoryLocked)
        {
            if (candidate.MemoryLocked)
            {
                // Some PTEs may hold the swap entry already; the page stays in the swap cache and comes back on a fault.
                return Verdict.Activate;
            }
            // A lazily freed page written since MADV_FREE: it is swap-backed again (folio_set_swapbacked).
            memory.ClearFlags(pfn, FrameFlags.LazyFree);
            return Verdict.Activate;
        }
        // Acquire read; pairs with the Interlocked map-count changes of faults and of TryToUnmap.
        if (Volatile.Read(ref memory.Info(pfn).MapCount) != 0)
        {
            // Mapped again meanwhile (a swap-in found it in the swap cache): it stays.
            return Verdict.Activate;
        }
        if (candidate.Lazy)
        {
            if (!memory.TryFreeze(pfn, 1))
            {
                return Verdict.Keep;
            }
            memory.FreeBatch([pfn]);
            node.Counters.AddShared(VmEvent.LazyFreed);
            return Verdict.Freed;
        }
        SwapEntry entry = candidate.Entry;
        SwapDevice device = node.Swap.DeviceOf(entry)!;
        if (memory.HasFlags(pfn, FrameFlags.Dirty) && device.UseCount(entry.Offset) > 0)
        {
            // pageout: cleared first, so a failed write can set it again and nothing is lost.
            memory.ClearFlags(pfn, FrameFlags.Dirty);
            if (!device.Area.TryWrite(entry.Offset, memory.Contents(pfn)))
            {
                memory.SetFlags(pfn, FrameFlags.Dirty);
                node.Counters.AddShared(VmEvent.SwapWriteFailed);
                return Verdict.Activate;
            }
            node.Counters.AddShared(VmEvent.SwapOut);
            memory.Info(pfn).Charge?.Count(ChargeEvent.SwapOut);
        }
        // __remove_mapping: only the swap cache's reference and the isolation's may be left.
        if (!memory.TryFreeze(pfn, 2))
        {
            return Verdict.Keep;
        }
        bool removed = device.RemoveCache(entry.Offset, pfn);
        Debug.Assert(removed, "a locked swap-cache frame left the cache");
        memory.ClearFlags(pfn, FrameFlags.SwapCache);
        memory.Info(pfn).SwapEntry = 0;
        device.ReleaseCache(entry.Offset);
        memory.FreeBatch([pfn]);
        return Verdict.Freed;
    }

    // The end of shrink_folio_list for one frame: a freed frame is gone; a kept one is unlocked and put back.
    private static bool Conclude(MemoryNode node, in Candidate candidate)
    {
        if (candidate.Verdict == Verdict.Freed)
        {
            return true;
        }
        int pfn = candidate.Pfn;
        FrameLru lru = node.Memory.Lru!;
        if (candidate.Locked)
        {
            // A page kept in memory whose slot no entry names any more needs the slot no longer (folio_free_swap).
            node.Swap.FreeIfUnused(pfn);
            node.Swap.UnlockAndFreeIfUnused(pfn);
        }
        bool activate = candidate.Verdict == Verdict.Activate;
        if (activate && candidate.Locked)
        {
            node.Counters.AddShared(VmEvent.Activate);
        }
        lru.Putback(pfn, activate);
        return false;
    }

    /// <summary>
    /// <c>folio_referenced</c>: clears the Accessed bit of every PTE mapping the frame, each with
    /// <c>ptep_clear_flush_young</c>'s flush (a TLB-generation bump: the software TLB sets Accessed only when it fills,
    /// so without dropping its translation a re-reference would never be seen). Returns the PTEs that had it.
    /// </summary>
    public static int ClearReferences(PhysicalMemory memory, long pfn)
    {
        int referenced = 0;
        ReverseMap.Walk(memory, pfn, (mm, _, address, at) =>
        {
            PageTable table = mm.PageTable;
            ref int ptl = ref table.PteLock(at.PteTable);
            SpinWord.Enter(ref ptl);
            while (true)
            {
                ulong pte = table.ReadPte(at);
                if (!MapsThisFrame(pte, pfn) || (pte & Pte.Accessed) == 0)
                {
                    break;
                }
                if (table.TryReplacePte(at, pte, pte & ~Pte.Accessed))
                {
                    referenced++;
                    ulong page = address >> PageGeometry.PageShift;
                    mm.Tlb.Bump(page, page + 1);
                    break;
                }
            }
            SpinWord.Exit(ref ptl);
            return true;
        });
        return referenced;
    }

    // shrink_active_list: every page of a batch goes to the inactive list, its Accessed bits cleared on the way, so the
    // inactive scan sees only references made since.
    private static int ShrinkActive(MemoryNode node, int lruvec, Span<int> batch)
    {
        FrameLru lru = node.Memory.Lru!;
        int isolated = lru.Isolate(lruvec, active: true, batch, out int scanned);
        for (int i = 0; i < isolated; i++)
        {
            ClearReferences(node.Memory, batch[i]);
            lru.Putback(batch[i], active: false);
        }
        node.Counters.AddShared(VmEvent.Deactivate, isolated);
        return Math.Max(1, scanned);
    }

    /// <summary>
    /// <c>try_to_unmap</c>: under each PTE lock the reverse map finds, replaces the entry mapping the frame with
    /// <paramref name="swapPte"/> (with the entry's soft-dirty, uffd-wp and exclusive bits) and moves the PTE's dirty bit
    /// to the frame; for a lazily freed page (<paramref name="swapPte"/> 0) clears it instead, unless the PTE is dirty
    /// (false: the page was written). A page in a <c>VM_LOCKED</c> VMA stops the walk (<paramref name="mlocked"/>).
    /// Each PTE cleared joins <paramref name="unmapped"/>: the batch flushes those address spaces' TLBs (a grace period)
    /// before the mappings' references are dropped, so no Cpu can still write to the frame when the page-out reads it.
    /// </summary>
    private static bool TryToUnmap(MemoryNode node, int pfn, ulong swapPte, SwapDevice? device, List<Unmapped> unmapped,
        out bool mlocked)
    {
        PhysicalMemory memory = node.Memory;
        bool exclusive = memory.HasFlags(pfn, FrameFlags.AnonExclusive);
        bool clean = true;
        bool locked = false;
        ReverseMap.Walk(memory, pfn, (mm, vma, address, at) =>
        {
            if ((vma.Flags & VmFlags.Locked) != 0)
            {
                // try_to_unmap_one on a VM_LOCKED VMA: the page is mlocked and stays (the unevictable list's job).
                locked = true;
                return false;
            }
            PageTable table = mm.PageTable;
            ref int ptl = ref table.PteLock(at.PteTable);
            SpinWord.Enter(ref ptl);
            try
            {
                while (true)
                {
                    ulong pte = table.ReadPte(at);
                    if (!MapsThisFrame(pte, pfn))
                    {
                        return true;
                    }
                    if (swapPte == 0 && (pte & Pte.Dirty) != 0)
                    {
                        clean = false;
                        return false;
                    }
                    ulong replacement = swapPte == 0 ? 0 : swapPte
                        | ((pte & Pte.SoftDirty) != 0 ? Pte.SwapSoftDirty : 0)
                        | ((pte & Pte.UffdWp) != 0 ? Pte.SwapUffdWp : 0)
                        | (exclusive ? Pte.SwapExclusive : 0);
                    if (!table.TryReplacePte(at, pte, replacement))
                    {
                        continue;
                    }
                    if (swapPte != 0)
                    {
                        // The new entry's count; a zap or swap-in of it takes this PTE lock first, so none sees it before.
                        device!.Duplicate(SwapEntry.FromPte(swapPte).Offset);
                        if ((pte & Pte.Dirty) != 0)
                        {
                            memory.SetFlags(pfn, FrameFlags.Dirty);
                        }
                    }
                    // Full fence; pairs with the acquire read of the map count in IsExclusiveAnonymous and reclaim's check.
                    Interlocked.Decrement(ref memory.Info(pfn).MapCount);
                    mm.SharedCounters.AddShared(VmEvent.AnonPages, -1);
                    unmapped.Add(new Unmapped(mm, address >> PageGeometry.PageShift, pfn));
                    return true;
                }
            }
            finally
            {
                SpinWord.Exit(ref ptl);
            }
        });
        if (swapPte != 0)
        {
            memory.ClearFlags(pfn, FrameFlags.AnonExclusive);
        }
        mlocked = locked;
        return clean;
    }

    // try_to_unmap_flush: one grace period per address space over the pages the batch unmapped there, then the
    // mappings' references go (never the last: each frame's isolation reference remains).
    private static void FlushAndRelease(PhysicalMemory memory, List<Unmapped> unmapped)
    {
        for (int i = 0; i < unmapped.Count; i++)
        {
            MemoryDescriptor mm = unmapped[i].Mm;
            bool first = true;
            for (int j = 0; j < i && first; j++)
            {
                first = unmapped[j].Mm != mm;
            }
            if (!first)
            {
                continue;
            }
            ulong low = ulong.MaxValue, high = 0;
            foreach (Unmapped other in unmapped)
            {
                if (other.Mm == mm)
                {
                    low = Math.Min(low, other.Page);
                    high = Math.Max(high, other.Page + 1);
                }
            }
            mm.Rcu.Synchronize(low, high);
            mm.Probes.Hit(ProbePoint.ReclaimUnmapped);
        }
        foreach (Unmapped done in unmapped)
        {
            memory.Put(done.Pfn);
        }
    }

    private static bool MapsThisFrame(ulong pte, long pfn) => Pte.MapsFrame(pte) && (pte & Pte.Special) == 0 && Pte.Frame(pte) == pfn;
}
