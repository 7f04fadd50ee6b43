using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Faults;

/// <summary>
/// The handler every fault path ends in (<c>handle_mm_fault</c> → <c>handle_pte_fault</c> → <c>do_anonymous_page</c>,
/// <c>do_fault</c>, <c>do_wp_page</c>), written once for the three paths. With <see cref="FaultFlags.Speculative"/> set it never
/// re-reads the PTE, takes PTE locks with trylock after re-validating the VMA (<c>pte_map_lock</c>), and answers
/// <see cref="FaultResult.Retry"/> whenever it cannot prove the VMA unchanged.
/// </summary>
internal static class MemoryFaultHandler
{
    /// <summary>
    /// <c>handle_mm_fault</c> for the classic and VMA-lock paths: an empty PMD in a huge-eligible range or a huge PMD
    /// goes to <see cref="HugePmdFault"/>; otherwise walk allocating missing tables, read the PTE once, then
    /// <see cref="HandlePteFault"/>.
    /// </summary>
    public static FaultResult HandleMmFault(ref FaultContext fault)
    {
        Debug.Assert(!fault.IsSpeculative);
        FaultResult huge;
        if (HugePmdFault.IsEligible(fault.Vma!, fault.VmaFlags, fault.Mm.Settings, fault.Address)
            && HugePmdFault.TryAnonymous(ref fault, out huge))
        {
            return huge;
        }
        while (!fault.Mm.PageTable.WalkAllocate(fault.Address, fault.Cpu.Frames, out fault.Location))
        {
            // A huge PMD is there: handled at that level, or split for the 4 KiB path (then walk again).
            if ((fault.Location.PmdEntry & Pte.Huge) == 0)
            {
                return FaultResult.Oom;
            }
            if (HugePmdFault.HandleHugePmd(ref fault, fault.Location.PmdEntry, out huge))
            {
                return huge;
            }
        }
        fault.HasPteTable = true;
        fault.OriginalPte = fault.Mm.PageTable.ReadPte(fault.Location);
        return HandlePteFault(ref fault);
    }

    /// <summary>
    /// <c>handle_pte_fault</c>: <see cref="FaultContext.OriginalPte"/> was read once by the caller (the speculative
    /// walk, or <see cref="HandleMmFault"/>).
    /// </summary>
    public static FaultResult HandlePteFault(ref FaultContext fault)
    {
        if (!fault.HasPteTable)
        {
            // An empty PMD on the speculative path: the classic path instantiates it.
            Debug.Assert(fault.IsSpeculative);
            return FaultResult.Retry;
        }
        if (fault.Vma!.Backing is HostMemoryBacking host)
        {
            return HostMemoryFault.Handle(ref fault, host);
        }
        ulong pte = fault.OriginalPte;
        if (Pte.IsNone(pte))
        {
            return fault.Vma!.Backing.IsAnonymous ? DoAnonymousPage(ref fault) : DoFault(ref fault);
        }
        if (Pte.IsSwap(pte))
        {
            return SwapInFault.Handle(ref fault);
        }
        if (!PteMapLock(ref fault))
        {
            return FaultResult.Retry;
        }
        PageTable table = fault.Mm.PageTable;
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (table.ReadPte(fault.Location) != pte)
        {
            // Another thread changed it: nothing to do, the access is retried.
            SpinWord.Exit(ref ptl);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        bool unshare = (fault.Flags & FaultFlags.Unshare) != 0;
        if ((fault.IsWrite || unshare) && (pte & Pte.Writable) == 0 && Pte.IsPresent(pte))
        {
            if (unshare)
            {
                return DoUnsharePage(ref fault, pte);
            }
            if ((pte & Pte.UffdWp) != 0 && (fault.VmaFlags & VmFlags.UserfaultWp) != 0)
            {
                // do_wp_page: userfaultfd_pte_wp → handle_userfault(VM_UFFD_WP), with the PTE lock dropped.
                SpinWord.Exit(ref ptl);
                return UserFaultDelivery.Handle(ref fault, UserFaultModes.WriteProtect);
            }
            return DoWriteProtectPage(ref fault, pte);
        }
        // Spurious (another Cpu raced, or a PROT_NONE entry left by a protect that is now widening): mark young.
        ulong young = pte | Pte.Accessed | (fault.IsWrite ? Pte.DirtyBits : 0);
        if (young != pte)
        {
            table.WritePte(fault.Location, young);
        }
        SpinWord.Exit(ref ptl);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>pte_unmap_same</c> (SPF v9, "mm: make pte_unmap_same compatible with SPF", 2018-04): Ok when the PTE is still <c>orig_pte</c>, <see cref="FaultResult.PtNotSame"/>
    /// when it changed, <see cref="FaultResult.Retry"/> when the speculative lock failed (the VMA changed).
    /// </summary>
    public static FaultResult PteUnmapSame(ref FaultContext fault)
    {
        if (!PteMapLock(ref fault))
        {
            return FaultResult.Retry;
        }
        PageTable table = fault.Mm.PageTable;
        bool same = table.ReadPte(fault.Location) == fault.OriginalPte;
        SpinWord.Exit(ref table.PteLock(fault.Location.PteTable));
        return same ? FaultResult.Ok : FaultResult.PtNotSame;
    }

    /// <summary>
    /// <c>pte_map_lock</c> / <c>pte_spinlock</c>. Classic and VMA-lock paths: a plain lock (the VMA cannot change).
    /// Speculative path: inside a read section, fail if the VMA changed or the PMD is not <c>orig_pmd</c>; trylock the
    /// PTE lock, and on failure leave the section and try again — never block inside it, since the lock holder may be
    /// a writer waiting for this very section to end (the TLB-IPI deadlock of the SPF threads); re-check the VMA under
    /// the lock. On success the PTE lock is held and keeps the table alive (free_pgtables takes it too).
    /// </summary>
    public static bool PteMapLock(ref FaultContext fault)
    {
        PageTable table = fault.Mm.PageTable;
        if (!fault.IsSpeculative)
        {
            SpinWord.Enter(ref table.PteLock(fault.Location.PteTable));
            return true;
        }
        fault.Mm.Probes.Hit(ProbePoint.SpeculativeBeforePteLock);
        var check = new VmaChangeCheck(fault.Vma!, fault.Sequence);
        RcuReader reader = fault.Cpu.Reader;
        var spinner = new SpinWait();
        while (true)
        {
            reader.Enter();
            if (check.HasChanged())
            {
                reader.Exit();
                fault.Cpu.Counters.Add(VmEvent.SpeculativeVmaChanged);
                return false;
            }
            if (table.ReadPmd(fault.Location) != fault.Location.PmdEntry)
            {
                reader.Exit();
                fault.Cpu.Counters.Add(VmEvent.SpeculativePmdChanged);
                return false;
            }
            ref int ptl = ref table.PteLock(fault.Location.PteTable);
            if (!SpinWord.TryEnter(ref ptl))
            {
                fault.Mm.Probes.Hit(ProbePoint.SpeculativePteTrylockFailed);
                reader.Exit();
                fault.Cpu.Counters.Add(VmEvent.SpeculativeTrylockRetry);
                spinner.SpinOnce(sleep1Threshold: -1);
                continue;
            }
            if (check.HasChanged())
            {
                SpinWord.Exit(ref ptl);
                reader.Exit();
                fault.Cpu.Counters.Add(VmEvent.SpeculativePteLock);
                return false;
            }
            reader.Exit();
            return true;
        }
    }

    /// <summary>
    /// <c>do_anonymous_page</c>: a read maps the shared zero frame read-only, unless the address space forbids it
    /// (<c>mm_forbids_zeropage</c>, <see cref="MmSettings.MapZeroPageOnRead"/> off); otherwise a zeroed frame is
    /// allocated and mapped, writable and dirty only if the VMA has VM_WRITE. The PTE is installed only if still empty
    /// under the PTE lock; the loser of a race gives its frame back.
    /// </summary>
    public static FaultResult DoAnonymousPage(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        if ((fault.VmaFlags & VmFlags.UserfaultMissing) != 0)
        {
            // userfaultfd_missing: the channel fills the page (the speculative path bailed out on such a VMA earlier).
            return UserFaultDelivery.Handle(ref fault, UserFaultModes.Missing);
        }
        if (!fault.IsWrite && mm.Settings.MapZeroPageOnRead)
        {
            ulong zeroEntry = Pte.MakeLeaf(PhysicalMemory.ZeroFrame, fault.Protection, writable: false, special: true) | Pte.Accessed;
            if (!PteMapLock(ref fault))
            {
                return FaultResult.Retry;
            }
            ref int zeroPtl = ref table.PteLock(fault.Location.PteTable);
            if (!Pte.IsNone(table.ReadPte(fault.Location)))
            {
                SpinWord.Exit(ref zeroPtl);
                fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
                return FaultResult.Ok;
            }
            table.WritePte(fault.Location, zeroEntry);
            SpinWord.Exit(ref zeroPtl);
            fault.Cpu.Counters.Add(VmEvent.ZeroPageFault);
            return FaultResult.Ok;
        }

        FaultResult prepared = AnonVmaPrepare(ref fault);
        if (prepared != FaultResult.Ok)
        {
            return prepared;
        }
        int pfn = fault.Cpu.Frames.Allocate();
        if (pfn == PhysicalMemory.NoFrame)
        {
            return FaultResult.Oom;
        }
        if (!FaultCharge.TryCharge(ref fault, pfn, 1, FrameKind.Anonymous))
        {
            fault.Cpu.Frames.Release(pfn);
            return FaultResult.Oom;
        }
        mm.Memory.PrepareZeroed(pfn);
        mm.Probes.Hit(ProbePoint.AnonymousBeforePteLock);
        // "if (vma->vm_flags & VM_WRITE) entry = pte_mkwrite(pte_mkdirty(entry))": a write fault always has VM_WRITE;
        // a read without the zero page maps a read-only VMA's frame read-only and clean, as nothing was written.
        bool writable = (fault.VmaFlags & VmFlags.Write) != 0;
        ulong entry = Pte.MakeLeaf(pfn, fault.Protection, writable, special: false) | Pte.Accessed | (writable ? Pte.DirtyBits : 0);
        if (!PteMapLock(ref fault))
        {
            ReleaseUnused(ref fault, pfn);
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (!Pte.IsNone(table.ReadPte(fault.Location)))
        {
            SpinWord.Exit(ref ptl);
            ReleaseUnused(ref fault, pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        SetNewAnonymous(ref fault, pfn);
        // Release store: the zeroed contents and metadata are visible before the PTE (set_pte_at).
        table.WritePte(fault.Location, entry);
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.AnonPages);
        fault.Cpu.Counters.Add(VmEvent.AnonymousFault);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>do_wp_page</c>, entered with the PTE lock held on a present read-only PTE of a writable VMA. An exclusive
    /// anonymous frame is reused (made writable); a shared mapping's page is made writable and dirty
    /// (<c>wp_page_shared</c>); anything else, the zero frame included, is copied (<c>wp_page_copy</c>). The new entry
    /// is soft-dirty and carries no write-tracking bit: this is the write the dirty log and soft-dirty wait for. An
    /// entry a write watch armed leaves the watch's notice with the Cpu, which runs it before retrying the store.
    /// </summary>
    private static FaultResult DoWriteProtectPage(ref FaultContext fault, ulong pte)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        fault.Cpu.Counters.Add(VmEvent.WriteProtectFault);
        long oldPfn = Pte.Frame(pte);
        bool special = (pte & Pte.Special) != 0;
        if (!special && mm.Memory.IsExclusiveAnonymous(oldPfn))
        {
            // wp_page_reuse: an exclusive anonymous page just becomes writable.
            table.WritePte(fault.Location, (pte & ~Pte.WriteNotify) | Pte.Writable | Pte.DirtyBits | Pte.Accessed);
            SpinWord.Exit(ref ptl);
            NoteWatchedWrite(ref fault, pte);
            fault.Cpu.Counters.Add(VmEvent.CowReuse);
            return FaultResult.Ok;
        }
        if (!special && (fault.VmaFlags & VmFlags.Shared) != 0)
        {
            // wp_page_shared: the backing's own page is written; it must be written back.
            mm.Memory.SetFlags(oldPfn, FrameFlags.Dirty);
            table.WritePte(fault.Location, (pte & ~Pte.WriteNotify) | Pte.Writable | Pte.DirtyBits | Pte.Accessed);
            SpinWord.Exit(ref ptl);
            NoteWatchedWrite(ref fault, pte);
            return FaultResult.Ok;
        }
        if (!special)
        {
            // get_page under the lock: the frame stays ours to copy from once the lock is dropped, whatever unmaps it.
            mm.Memory.Get(oldPfn);
        }
        SpinWord.Exit(ref ptl);
        FaultResult copied = WritePageCopy(ref fault, pte, special);
        if (!special)
        {
            // The copy is done or abandoned; the mapping's own reference (if still mapped) keeps the frame.
            mm.Memory.Put(oldPfn);
        }
        return copied;
    }

    /// <summary>
    /// <c>do_wp_page</c> with <c>FAULT_FLAG_UNSHARE</c>, entered with the PTE lock held on a present read-only PTE: an
    /// anonymous page that may be reused is only marked exclusive; one still shared copy-on-write is copied and the copy
    /// mapped read-only (<c>wp_page_copy</c> without <c>maybe_mkwrite</c>), so a later write reuses it in place and a
    /// read pin of it sees every write this mapping makes. Nothing else needs unsharing.
    /// </summary>
    private static FaultResult DoUnsharePage(ref FaultContext fault, ulong pte)
    {
        MemoryDescriptor mm = fault.Mm;
        ref int ptl = ref mm.PageTable.PteLock(fault.Location.PteTable);
        long oldPfn = Pte.Frame(pte);
        if ((pte & Pte.Special) != 0 || (fault.VmaFlags & VmFlags.Shared) != 0 || mm.Memory.Info(oldPfn).Kind != FrameKind.Anonymous
            || mm.Memory.IsExclusiveAnonymous(oldPfn))
        {
            SpinWord.Exit(ref ptl);
            return FaultResult.Ok;
        }
        mm.Memory.Get(oldPfn);
        SpinWord.Exit(ref ptl);
        FaultResult copied = WritePageCopy(ref fault, pte, fromZeroFrame: false);
        mm.Memory.Put(oldPfn);
        return copied;
    }

    /// <summary>
    /// <c>wp_page_copy</c>: allocates a frame, fills it from the old one (zeroes it for the zero frame), and installs it
    /// writable if the PTE is still <paramref name="pte"/> under the lock. The old frame loses its map count there and
    /// its mapping's reference through a gather after the flush: another Cpu may still read it through its TLB.
    /// </summary>
    private static FaultResult WritePageCopy(ref FaultContext fault, ulong pte, bool fromZeroFrame)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        FaultResult prepared = AnonVmaPrepare(ref fault);
        if (prepared != FaultResult.Ok)
        {
            return prepared;
        }
        int pfn = fault.Cpu.Frames.Allocate();
        if (pfn == PhysicalMemory.NoFrame)
        {
            return FaultResult.Oom;
        }
        if (!FaultCharge.TryCharge(ref fault, pfn, 1, FrameKind.Anonymous))
        {
            fault.Cpu.Frames.Release(pfn);
            return FaultResult.Oom;
        }
        long oldPfn = Pte.Frame(pte);
        if (fromZeroFrame)
        {
            mm.Memory.PrepareZeroed(pfn);
        }
        else
        {
            mm.Memory.Copy(oldPfn, pfn);
        }
        mm.Probes.Hit(ProbePoint.CowCopiedBeforePteLock);
        if (!PteMapLock(ref fault))
        {
            ReleaseAllocated(ref fault, pfn, fromZeroFrame);
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (table.ReadPte(fault.Location) != pte)
        {
            SpinWord.Exit(ref ptl);
            ReleaseAllocated(ref fault, pfn, fromZeroFrame);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        SetNewAnonymous(ref fault, pfn);
        if ((fault.Flags & FaultFlags.Unshare) != 0)
        {
            // An unshare maps the copy as the old entry was: read-only, clean, its soft-dirty state kept.
            table.WritePte(fault.Location, Pte.MakeLeaf(pfn, fault.Protection, writable: false, special: false) | Pte.Accessed | (pte & Pte.SoftDirty));
        }
        else
        {
            table.WritePte(fault.Location, Pte.MakeLeaf(pfn, fault.Protection, writable: true, special: false) | Pte.Accessed | Pte.DirtyBits);
            NoteWatchedWrite(ref fault, pte);
        }
        var gather = new MmuGather(mm.Memory, mm.Rcu, caller: fault.Cpu.Reader);
        // MM_ANONPAGES grows unless the page replaced was anonymous already (a frame shared by fork).
        bool replacedAnonymous = !fromZeroFrame && mm.Memory.Info(oldPfn).Kind == FrameKind.Anonymous;
        if (!fromZeroFrame)
        {
            // page_remove_rmap under the lock, put_page after the flush (the gather's rule).
            gather.RemoveMapping(oldPfn);
            gather.NoteTranslationChange(fault.Address);
        }
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.CowFault);
        if (!replacedAnonymous)
        {
            fault.Cpu.Counters.Add(VmEvent.AnonPages);
        }
        if (fromZeroFrame)
        {
            // ptep_clear_flush: other Cpus may cache the read-only zero-frame translation; the zero frame is never
            // freed, so a generation bump (no grace period) is enough for them to see the new frame on their next access,
            // except read scopes, which RcuDomain.ShootDown waits for.
            mm.Rcu.ShootDown(fault.Address >> PageGeometry.PageShift, (fault.Address >> PageGeometry.PageShift) + 1, fault.Cpu.Reader);
            return FaultResult.Ok;
        }
        gather.Finish(mm.Probes);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>do_fault</c>: a first touch of a page of a backed VMA. A read maps the backing's page read-only; a private
    /// write copies it (<c>do_cow_fault</c>); a shared write maps it writable (<c>do_shared_fault</c>).
    /// </summary>
    private static FaultResult DoFault(ref FaultContext fault)
    {
        if ((fault.VmaFlags & (VmFlags.UserfaultMissing | VmFlags.UserfaultMinor)) != 0 && fault.Vma!.Backing is IPageCacheBacking registered)
        {
            // shmem_get_folio_gfp: a cached page not mapped here is a minor fault, a hole a missing one.
            bool cached = registered.IsCached(fault.PageOffset);
            if ((fault.VmaFlags & (cached ? VmFlags.UserfaultMinor : VmFlags.UserfaultMissing)) != 0)
            {
                return UserFaultDelivery.Handle(ref fault, cached ? UserFaultModes.Minor : UserFaultModes.Missing);
            }
        }
        if (!fault.IsWrite)
        {
            return DoReadFault(ref fault);
        }
        return (fault.VmaFlags & VmFlags.Shared) == 0 ? DoCowFault(ref fault) : DoSharedFault(ref fault);
    }

    /// <summary><c>do_read_fault</c>: the backing's frame, mapped read-only (a later write faults again to copy or dirty it).</summary>
    private static FaultResult DoReadFault(ref FaultContext fault)
    {
        // uffd_disable_fault_around: a write-protect or minor registration must see every page's first fault.
        if (fault.Vma!.Backing is IPageCacheBacking cache && fault.Mm.Settings.FaultAroundPages > 1
            && (fault.VmaFlags & (VmFlags.UserfaultWp | VmFlags.UserfaultMinor)) == 0)
        {
            // should_fault_around: a backing with a page cache (->map_pages) maps what it has cached around the
            // address first; if that mapped the faulting page, nothing is left to do (VM_FAULT_NOPAGE).
            FaultResult around = DoFaultAround(ref fault, cache, out bool mappedFaultingPage);
            if (around != FaultResult.Ok || mappedFaultingPage)
            {
                return around;
            }
        }
        FaultResult got = BackingFault(ref fault, out long pfn);
        return got != FaultResult.Ok ? got : FinishFault(ref fault, pfn, writable: MapsWritableOnRead(ref fault), dirty: false);
    }

    /// <summary>
    /// <c>do_fault_around</c> + <c>filemap_map_pages</c>: under the PTE lock, maps clean (writable as a read fault
    /// maps, <see cref="MapsWritableOnRead"/>) every page of the
    /// <c>fault_around_pages</c> window (aligned in the page table, clipped to the VMA and the table) whose entry is
    /// empty and whose page <paramref name="cache"/> holds now; nothing is read in or allocated. Each page is looked up
    /// (reference, then re-read of the index) under the lock, which orders it against a hole punch as
    /// <see cref="FinishFault"/>'s re-check does. RETRY when the speculative lock fails.
    /// </summary>
    private static FaultResult DoFaultAround(ref FaultContext fault, IPageCacheBacking cache, out bool mappedFaultingPage)
    {
        mappedFaultingPage = false;
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        Vma vma = fault.Vma!;
        ulong pages = (ulong)mm.Settings.FaultAroundPages;
        // A VMA's range never changes (an edit replaces the VMA), so these reads are stable; pte_map_lock re-validates.
        ulong pteIndex = (ulong)fault.Location.PteIndex;
        ulong vmaOffset = (fault.Address - vma.Start) >> PageGeometry.PageShift;
        ulong vmaPages = vma.Length >> PageGeometry.PageShift;
        ulong from = Math.Max(pteIndex & ~(pages - 1), pteIndex - Math.Min(pteIndex, vmaOffset));
        ulong to = Math.Min(Math.Min(from + pages, (ulong)PageGeometry.EntriesPerTable), pteIndex + vmaPages - vmaOffset);
        if (!PteMapLock(ref fault))
        {
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        bool writable = MapsWritableOnRead(ref fault);
        long mapped = 0;
        unsafe
        {
            ulong* entries = table.Entries(fault.Location.PteTable);
            for (ulong index = from; index < to; index++)
            {
                if (Volatile.Read(ref entries[index]) != 0
                    || !cache.TryGetCached(fault.PageOffset + index - pteIndex, out long pfn))
                {
                    continue;
                }
                if (!FaultCharge.TryChargeShared(ref fault, pfn, recordOom: false))
                {
                    // Over the group's limit: only the faulting page's own fault may end in the group's OOM.
                    mm.Memory.Put(pfn);
                    continue;
                }
                // Full fence, as in FinishFault; the reference taken by the lookup becomes the mapping's.
                Interlocked.Increment(ref mm.Memory.Info(pfn).MapCount);
                // Release store: the map count is visible before the PTE (set_pte_range).
                Volatile.Write(ref entries[index], Pte.MakeLeaf(pfn, fault.Protection, writable, special: false) | Pte.Accessed);
                mapped += mm.Memory.Info(pfn).Kind == FrameKind.Shmem ? 1 : 0;
                mappedFaultingPage |= index == pteIndex;
            }
        }
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.ShmemPages, mapped);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>vm_page_prot</c> of a shared writable VMA without write notification (<c>vma_wants_writenotify</c> false:
    /// shmem has no <c>page_mkwrite</c> and no dirty accounting): a read fault maps a page-cache page writable and
    /// clean, so a later store dirties only this PTE (the frame is marked dirty when the PTE is zapped). Other
    /// backings map read-only and take a write fault to be told (<c>wp_page_shared</c>), and so does shared memory
    /// whose soft-dirty bits are being tracked (<c>vma_soft_dirty_enabled</c> makes <c>vma_wants_writenotify</c> true).
    /// </summary>
    private static bool MapsWritableOnRead(ref FaultContext fault) =>
        fault.Vma!.Backing is IPageCacheBacking { WantsWriteNotify: false } && (fault.VmaFlags & (VmFlags.Shared | VmFlags.Write)) == (VmFlags.Shared | VmFlags.Write)
        && !SoftDirtyEnabled(fault.Mm.Settings, fault.VmaFlags);

    /// <summary>
    /// <c>vma_soft_dirty_enabled</c>: the address space tracks soft-dirty and the VMA's flag was cleared, so a clean
    /// page must fault on its first write to become soft-dirty.
    /// </summary>
    public static bool SoftDirtyEnabled(MmSettings settings, VmFlags flags) => settings.SoftDirty && (flags & VmFlags.SoftDirty) == 0;

    // A write fault removed a write watch's arming from `pte`: the Cpu notifies the watch once the fault path is left.
    private static void NoteWatchedWrite(ref FaultContext fault, ulong pte)
    {
        if ((pte & Pte.WriteWatched) != 0)
        {
            fault.Cpu.NoteWatchedWrite(fault.Address);
        }
    }

    /// <summary><c>do_shared_fault</c>: the backing's frame, mapped writable and marked dirty.</summary>
    private static FaultResult DoSharedFault(ref FaultContext fault)
    {
        FaultResult got = BackingFault(ref fault, out long pfn);
        return got != FaultResult.Ok ? got : FinishFault(ref fault, pfn, writable: true, dirty: true);
    }

    /// <summary>
    /// <c>do_cow_fault</c>: a private write: a new anonymous frame filled from the backing's page, installed writable;
    /// the backing's page is left as it was.
    /// </summary>
    private static FaultResult DoCowFault(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        FaultResult prepared = AnonVmaPrepare(ref fault);
        if (prepared != FaultResult.Ok)
        {
            return prepared;
        }
        int pfn = fault.Cpu.Frames.Allocate();
        if (pfn == PhysicalMemory.NoFrame)
        {
            return FaultResult.Oom;
        }
        if (!FaultCharge.TryCharge(ref fault, pfn, 1, FrameKind.Anonymous))
        {
            fault.Cpu.Frames.Release(pfn);
            return FaultResult.Oom;
        }
        FaultResult got = BackingFault(ref fault, out long source);
        if (got != FaultResult.Ok)
        {
            fault.Cpu.Frames.Release(pfn);
            return got;
        }
        mm.Memory.Copy(source, pfn);
        // The backing's reference for this fault ends with the copy; it was never mapped, so no flush is owed.
        mm.Memory.Put(source);
        if (!PteMapLock(ref fault))
        {
            fault.Cpu.Frames.Release(pfn);
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (!Pte.IsNone(table.ReadPte(fault.Location)))
        {
            SpinWord.Exit(ref ptl);
            fault.Cpu.Frames.Release(pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        SetNewAnonymous(ref fault, pfn);
        // Release store: the copied contents and metadata are visible before the PTE (set_pte_at).
        table.WritePte(fault.Location, Pte.MakeLeaf(pfn, fault.Protection, writable: true, special: false) | Pte.Accessed | Pte.DirtyBits);
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.AnonPages);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>finish_fault</c>: installs the backing's frame if the PTE is still none under the lock. The reference the
    /// backing took for this fault becomes the mapping's; the map count rises (<c>folio_add_file_rmap</c>). A write
    /// fault's install (<paramref name="dirty"/>) marks the PTE and the frame dirty (<c>fault_dirty_shared_page</c>).
    /// </summary>
    private static FaultResult FinishFault(ref FaultContext fault, long pfn, bool writable, bool dirty)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        if (mm.Memory.Info(pfn).Kind is FrameKind.PageCache or FrameKind.Shmem && !FaultCharge.TryChargeShared(ref fault, pfn))
        {
            mm.Memory.Put(pfn);
            return FaultResult.Oom;
        }
        mm.Probes.Hit(ProbePoint.BackingFaultBeforePteLock);
        if (!PteMapLock(ref fault))
        {
            mm.Memory.Put(pfn);
            return FaultResult.Retry;
        }
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        if (!Pte.IsNone(table.ReadPte(fault.Location)))
        {
            SpinWord.Exit(ref ptl);
            mm.Memory.Put(pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        if (fault.Vma!.Backing is IPageCacheBacking cache && !cache.IsStillCached(fault.PageOffset, pfn))
        {
            // A hole was punched since the lookup (the kernel's truncation would have waited for the folio lock): the
            // page is not installed, and the access faults again on what the backing holds now.
            SpinWord.Exit(ref ptl);
            mm.Memory.Put(pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        // Full fence; pairs with the gather's decrement and the acquire read in IsExclusiveAnonymous.
        Interlocked.Increment(ref mm.Memory.Info(pfn).MapCount);
        if (dirty)
        {
            mm.Memory.SetFlags(pfn, FrameFlags.Dirty);
        }
        ulong entry = Pte.MakeLeaf(pfn, fault.Protection, writable, special: false) | Pte.Accessed | (dirty ? Pte.DirtyBits : 0);
        // Release store: the map count and flags are visible before the PTE (set_pte_at).
        table.WritePte(fault.Location, entry);
        SpinWord.Exit(ref ptl);
        if (mm.Memory.Info(pfn).Kind == FrameKind.Shmem)
        {
            // inc_mm_counter(MM_SHMEMPAGES) (mm_counter_file of a swap-backed folio).
            fault.Cpu.Counters.Add(VmEvent.ShmemPages);
        }
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>__do_fault</c>: asks the backing for the page, telling it whether it may sleep; maps its answer onto the
    /// handler's result.
    /// </summary>
    private static FaultResult BackingFault(ref FaultContext fault, out long pfn)
    {
        // filemap_fault under the VMA lock maps what is cached and leaves I/O to the mmap-lock path (RETRY); a read-in
        // reads around the page as the VMA's advice says (do_sync_mmap_readahead).
        BackingFaultStatus status = fault.Vma!.Backing is FileBacking file
            ? file.Fault(fault.PageOffset, fault.IsSpeculative, mayReadIn: (fault.Flags & FaultFlags.VmaLock) == 0,
                (fault.VmaFlags & VmFlags.RandomRead) != 0 ? ReadAround.None
                : (fault.VmaFlags & VmFlags.SequentialRead) != 0 ? ReadAround.Sequential : ReadAround.Around, out pfn)
            : fault.Vma!.Backing.Fault(fault.PageOffset, fault.Access, fault.IsSpeculative, out pfn);
        return status switch
        {
            BackingFaultStatus.Ok => FaultResult.Ok,
            BackingFaultStatus.SigBus => FaultResult.SigBus,
            BackingFaultStatus.Oom => FaultResult.Oom,
            _ => FaultResult.Retry,
        };
    }

    // A private anonymous frame a fault is about to install (folio_add_new_anon_rmap): owned by the VMA's anon_vma at
    // the faulting page's index, mapped once, exclusive. Called under the PTE lock, before the PTE store.
    private static void SetNewAnonymous(ref FaultContext fault, int pfn)
    {
        ref FrameInfo info = ref fault.Mm.Memory.Info(pfn);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 1;
        info.Mapping = fault.Vma!.AnonVma;
        info.Index = fault.PageOffset;
        fault.Mm.Memory.SetFlags(pfn, FrameFlags.AnonExclusive);
        // folio_add_lru_vma: reclaim sees the page (only when a swap area gave the arena LRU lists).
        fault.Mm.Memory.Lru?.Add(pfn, active: false);
    }

    // A frame this fault allocated but did not install: one it zeroed is still zero; a copy is not.
    private static void ReleaseAllocated(ref FaultContext fault, int pfn, bool zeroed)
    {
        if (zeroed)
        {
            ReleaseUnused(ref fault, pfn);
        }
        else
        {
            fault.Cpu.Frames.Release(pfn);
        }
    }

    // A frame this fault allocated and zeroed but did not install: still zero, back to the Cpu's cache.
    private static void ReleaseUnused(ref FaultContext fault, int pfn)
    {
        fault.Mm.Memory.MarkUnused(pfn);
        fault.Cpu.Frames.Release(pfn);
    }

    /// <summary>
    /// <c>vmf_anon_prepare</c> / <c>anon_vma_prepare</c>: gives the VMA an anon_vma before its first anonymous page,
    /// reusing a compatible neighbour's (<c>find_mergeable_anon_vma</c>). Needs the mmap lock: under the VMA lock it
    /// takes it with a read trylock or answers RETRY; the speculative path answers RETRY (an anonymous VMA without
    /// one bailed out earlier; the first copy-on-write of a backed private VMA gets here).
    /// </summary>
    public static FaultResult AnonVmaPrepare(ref FaultContext fault)
    {
        Vma vma = fault.Vma!;
        if (vma.AnonVma is not null)
        {
            return FaultResult.Ok;
        }
        if (fault.IsSpeculative)
        {
            return FaultResult.Retry;
        }
        MemoryDescriptor mm = fault.Mm;
        bool locked = (fault.Flags & FaultFlags.VmaLock) != 0;
        if (locked && !mm.MmapLock.TryEnterRead())
        {
            return FaultResult.Retry;
        }
        try
        {
            AnonVmaPreparation.Prepare(mm, vma);
        }
        finally
        {
            if (locked)
            {
                mm.MmapLock.ExitRead();
            }
        }
        return FaultResult.Ok;
    }
}
