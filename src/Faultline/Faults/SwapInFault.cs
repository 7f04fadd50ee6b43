using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Faults;

/// <summary>
/// <c>do_swap_page</c> for the three fault paths: <c>pte_unmap_same</c> first, with the three answers of the SPF
/// series (OK goes on, PTNOTSAME means another thread already handled the entry and the fault returns 0, RETRY means
/// the speculative path's VMA changed), then the page from the swap cache or read from the area into a new frame that
/// joins the cache (with its neighbours: <see cref="SwapReadahead"/>), then the PTE under its lock if it is still <c>orig_pte</c>. The entry's reference is dropped
/// (<c>swap_free</c>); when that was the last, the page is exclusive: a write fault maps it writable at once, and the
/// page leaves the swap cache, freeing its slot.
/// </summary>
/// <remarks>
/// The speculative path never waits for I/O: a page not in the swap cache answers RETRY rather than reading the area.
/// A read may take long (a host file), and the speculative attempt holds nothing that would keep the VMA or the
/// page-table snapshot valid across it, so whatever it read might have to be thrown away at <c>pte_map_lock</c>; the
/// classic path reads under the mmap read lock (or the VMA lock) and keeps what it read. A page already cached needs
/// no I/O, so that common case (a page shared after fork, one being written out) stays speculative.
/// </remarks>
internal static class SwapInFault
{
    /// <summary>Handles a fault on a swap entry (<see cref="FaultContext.OriginalPte"/>).</summary>
    public static FaultResult Handle(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        mm.Probes.Hit(ProbePoint.SwapInBeforeUnmapSame);
        FaultResult same = MemoryFaultHandler.PteUnmapSame(ref fault);
        if (same == FaultResult.PtNotSame)
        {
            // Another thread swapped the page in, or the entry was zapped, since orig_pte was read: the access retries.
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        if (same != FaultResult.Ok)
        {
            return same;
        }
        SwapEntry entry = SwapEntry.FromPte(fault.OriginalPte);
        SwapDevice? device = entry.IsNonSwap ? null : mm.Node?.Swap.DeviceOf(entry);
        if (device is null)
        {
            // A non-swap entry nothing here makes, or an area this arena does not have: print_bad_pte's SIGBUS.
            return FaultResult.SigBus;
        }
        FaultResult prepared = MemoryFaultHandler.AnonVmaPrepare(ref fault);
        if (prepared != FaultResult.Ok)
        {
            return prepared;
        }
        FaultResult got = GetPage(ref fault, device, entry, out int pfn);
        if (got != FaultResult.Ok || pfn == 0)
        {
            return got;
        }
        return MapPage(ref fault, device, entry, pfn);
    }

    // swap_cache_get_folio, else swapin_readahead's one page: the frame with a reference, or 0 with Ok when the PTE
    // changed while waiting for another thread's read.
    private static FaultResult GetPage(ref FaultContext fault, SwapDevice device, SwapEntry entry, out int pfn)
    {
        var spinner = new SpinWait();
        while (true)
        {
            pfn = LookupCache(fault.Mm.Memory, device, entry);
            if (pfn != 0)
            {
                SwapReadahead.NoteCacheHit(ref fault, fault.Mm.Memory, pfn);
                return FaultResult.Ok;
            }
            if (fault.IsSpeculative)
            {
                return FaultResult.Retry;
            }
            if (device.TryClaimCache(entry.Offset))
            {
                return ReadIn(ref fault, device, entry, out pfn);
            }
            // Another thread is reading it in (or reclaim is taking it out of the cache): wait for it, unless our PTE
            // changed meanwhile (the entry was freed, or the page mapped by that thread).
            if (MemoryFaultHandler.PteUnmapSame(ref fault) != FaultResult.Ok)
            {
                return FaultResult.Ok;
            }
            spinner.SpinOnce(sleep1Threshold: 20);
        }
    }

    // Lockless lookup: the cached frame with a reference, re-checked after the reference (xas_reload), or 0.
    private static int LookupCache(PhysicalMemory memory, SwapDevice device, SwapEntry entry)
    {
        int pfn = device.LookupCache(entry.Offset);
        if (pfn == 0 || !memory.TryGet(pfn))
        {
            return 0;
        }
        if (device.LookupCache(entry.Offset) != pfn || memory.Info(pfn).SwapEntry != entry.ToPte())
        {
            memory.Put(pfn);
            return 0;
        }
        return pfn;
    }

    // The claim is ours: a new frame, filled from the area, joins the cache (its contents and metadata first).
    private static FaultResult ReadIn(ref FaultContext fault, SwapDevice device, SwapEntry entry, out int pfn)
    {
        MemoryDescriptor mm = fault.Mm;
        PhysicalMemory memory = mm.Memory;
        pfn = fault.Cpu.Frames.Allocate();
        if (pfn == PhysicalMemory.NoFrame)
        {
            device.ReleaseCache(entry.Offset);
            pfn = 0;
            return FaultResult.Oom;
        }
        // The page is charged to the faulting address space's group, whoever swapped it out (mem_cgroup_swapin_charge_folio).
        if (!FaultCharge.TryCharge(ref fault, pfn, 1, FrameKind.Anonymous))
        {
            fault.Cpu.Frames.Release(pfn);
            device.ReleaseCache(entry.Offset);
            pfn = 0;
            return FaultResult.Oom;
        }
        device.Area.Read(entry.Offset, memory.PrepareFill(pfn));
        ref FrameInfo info = ref memory.Info(pfn);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 0;
        // The entry may be shared with forked relatives: the oldest anon_vma of the family reaches every VMA that can
        // map it (__folio_set_anon of a page not known to be exclusive).
        info.Mapping = fault.Vma!.AnonVma!.Root;
        info.Index = fault.PageOffset;
        info.SwapEntry = entry.ToPte();
        memory.SetFlags(pfn, FrameFlags.SwapCache | FrameFlags.Uptodate);
        device.InsertCache(memory, entry.Offset, pfn);
        memory.Lru?.Add(pfn, active: false);
        mm.Node!.Counters.AddShared(VmEvent.SwapIn);
        mm.Node.Counters.AddShared(VmEvent.MajorFault);
        mm.Group?.Count(ChargeEvent.RefaultAnon);
        SwapReadahead.ReadAround(ref fault, device);
        return FaultResult.Ok;
    }

    // The rest of do_swap_page: under the PTE lock, if the PTE is still orig_pte, the frame replaces the entry.
    private static FaultResult MapPage(ref FaultContext fault, SwapDevice device, SwapEntry entry, int pfn)
    {
        MemoryDescriptor mm = fault.Mm;
        PhysicalMemory memory = mm.Memory;
        PageTable table = mm.PageTable;
        ulong pte = fault.OriginalPte;
        mm.Probes.Hit(ProbePoint.SwapInBeforePteLock);
        if (!MemoryFaultHandler.PteMapLock(ref fault))
        {
            memory.Put(pfn);
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (table.ReadPte(fault.Location) != pte)
        {
            SpinWord.Exit(ref ptl);
            DropIfUnused(mm, device, entry, pfn);
            memory.Put(pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        ref FrameInfo info = ref memory.Info(pfn);
        // swap_free: this PTE's reference; none left and no other mapping means the page is exclusive to this entry.
        bool exclusive = device.Release(entry.Offset) == 0 && Volatile.Read(ref info.MapCount) == 0;
        // Full fence; pairs with the acquire reads of the map count in IsExclusiveAnonymous and reclaim.
        Interlocked.Increment(ref info.MapCount);
        if (exclusive)
        {
            memory.SetFlags(pfn, FrameFlags.AnonExclusive);
        }
        else
        {
            memory.ClearFlags(pfn, FrameFlags.AnonExclusive);
        }
        bool uffdWp = (pte & Pte.SwapUffdWp) != 0;
        // do_swap_page's "(vmf->flags & FAULT_FLAG_WRITE) && exclusive": reuse the page for the write at once.
        bool writable = exclusive && fault.IsWrite && !uffdWp;
        ulong mapped = Pte.MakeLeaf(pfn, fault.Protection, writable, special: false) | Pte.Accessed
            | (writable ? Pte.DirtyBits : 0)
            | ((pte & Pte.SwapSoftDirty) != 0 ? Pte.SoftDirty : 0)
            | (uffdWp ? Pte.UffdWp : 0);
        // One reference beyond the mapping's, held until the cache is done with: an unmap racing from here may drop that.
        memory.Get(pfn);
        // Release store: the frame's contents, counts and flags are visible before the PTE (set_pte_at); the lookup's
        // reference becomes the mapping's.
        table.WritePte(fault.Location, mapped);
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.AnonPages);
        // The last PTE naming the entry went (exclusive or not: other mappings map the frame, not the slot): the slot
        // is freed now (try_to_free_swap) rather than kept for a clean re-reclaim, unless reclaim holds the page locked
        // (it drops it from the cache itself when done).
        DropIfUnused(mm, device, entry, pfn);
        memory.Put(pfn);
        return FaultResult.Ok;
    }

    // try_to_free_swap: the page leaves the swap cache (freeing the slot) when no PTE references the entry any more.
    private static void DropIfUnused(MemoryDescriptor mm, SwapDevice device, SwapEntry entry, int pfn)
    {
        SwapSpace swap = mm.Node!.Swap;
        if (device.UseCount(entry.Offset) != 0 || !swap.TryLock(pfn))
        {
            return;
        }
        swap.FreeIfUnused(pfn);
        swap.UnlockAndFreeIfUnused(pfn);
    }
}
