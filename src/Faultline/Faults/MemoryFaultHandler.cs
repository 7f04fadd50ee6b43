using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Faults;

/// <summary>
/// The handler every fault path ends in (<c>handle_mm_fault</c> → <c>handle_pte_fault</c> → <c>do_anonymous_page</c>,
/// <c>do_wp_page</c>), written once for the three paths. With <see cref="FaultFlags.Speculative"/> set it never
/// re-reads the PTE, takes PTE locks with trylock after re-validating the VMA (<c>pte_map_lock</c>), and answers
/// <see cref="FaultResult.Retry"/> whenever it cannot prove the VMA unchanged.
/// </summary>
internal static class MemoryFaultHandler
{
    /// <summary>
    /// <c>handle_mm_fault</c> for the classic and VMA-lock paths: walk allocating missing tables, read the PTE once,
    /// then <see cref="HandlePteFault"/>.
    /// </summary>
    public static FaultResult HandleMmFault(ref FaultContext fault)
    {
        Debug.Assert(!fault.IsSpeculative);
        if (!fault.Mm.PageTable.WalkAllocate(fault.Address, fault.Cpu.Frames, out fault.Location))
        {
            return FaultResult.Oom;
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
        ulong pte = fault.OriginalPte;
        if (Pte.IsNone(pte))
        {
            if (fault.Vma!.Backing.IsAnonymous)
            {
                return DoAnonymousPage(ref fault);
            }
            // do_fault: no speculative-safe file backing exists yet.
            return fault.IsSpeculative ? FaultResult.Retry : FaultResult.SigBus;
        }
        if (Pte.IsSwap(pte))
        {
            // do_swap_page starts with pte_unmap_same; with no swap device the entry can only be stale.
            FaultResult same = PteUnmapSame(ref fault);
            return same == FaultResult.PtNotSame ? FaultResult.Ok : same == FaultResult.Ok ? FaultResult.SigBus : same;
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
        if (fault.IsWrite && (pte & Pte.Writable) == 0 && Pte.IsPresent(pte))
        {
            return DoWriteProtectPage(ref fault, pte);
        }
        // Spurious (another Cpu raced, or a PROT_NONE entry left by a protect that is now widening): mark young.
        ulong young = pte | Pte.Accessed | (fault.IsWrite ? Pte.Dirty : 0);
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
            // handle_userfault cannot run speculatively (the SPF "goto setpte" skips only the delivery); no
            // user-fault handler exists yet, so the classic path reports SIGBUS as an unhandled uffd would.
            return fault.IsSpeculative ? FaultResult.Retry : FaultResult.SigBus;
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
        mm.Memory.PrepareZeroed(pfn);
        mm.Probes.Hit(ProbePoint.AnonymousBeforePteLock);
        // "if (vma->vm_flags & VM_WRITE) entry = pte_mkwrite(pte_mkdirty(entry))": a write fault always has VM_WRITE;
        // a read without the zero page maps a read-only VMA's frame read-only and clean, as nothing was written.
        bool writable = (fault.VmaFlags & VmFlags.Write) != 0;
        ulong entry = Pte.MakeLeaf(pfn, fault.Protection, writable, special: false) | Pte.Accessed | (writable ? Pte.Dirty : 0);
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
        ref FrameInfo info = ref mm.Memory.Info(pfn);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 1;
        // Release store: the zeroed contents and metadata are visible before the PTE (set_pte_at).
        table.WritePte(fault.Location, entry);
        SpinWord.Exit(ref ptl);
        fault.Cpu.Counters.Add(VmEvent.AnonPages);
        fault.Cpu.Counters.Add(VmEvent.AnonymousFault);
        return FaultResult.Ok;
    }

    /// <summary>
    /// <c>do_wp_page</c>, entered with the PTE lock held on a present read-only PTE of a writable VMA. An exclusive
    /// anonymous frame is reused (made writable); the zero frame is replaced by a fresh zeroed frame
    /// (<c>wp_page_copy</c>), re-validated under the lock as any install.
    /// </summary>
    private static FaultResult DoWriteProtectPage(ref FaultContext fault, ulong pte)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        fault.Cpu.Counters.Add(VmEvent.WriteProtectFault);
        long oldPfn = Pte.Frame(pte);
        bool special = (pte & Pte.Special) != 0;
        if (!special && mm.Memory.Info(oldPfn).Kind == FrameKind.Anonymous && Volatile.Read(ref mm.Memory.Info(oldPfn).MapCount) == 1)
        {
            // wp_page_reuse: an exclusive anonymous page just becomes writable.
            table.WritePte(fault.Location, pte | Pte.Writable | Pte.Dirty | Pte.Accessed);
            SpinWord.Exit(ref ptl);
            return FaultResult.Ok;
        }
        SpinWord.Exit(ref ptl);
        if (!special)
        {
            // Shared frames appear with fork; until then only the zero frame is copied.
            return FaultResult.SigBus;
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
        mm.Memory.PrepareZeroed(pfn);
        if (!PteMapLock(ref fault))
        {
            ReleaseUnused(ref fault, pfn);
            return FaultResult.Retry;
        }
        if (table.ReadPte(fault.Location) != pte)
        {
            SpinWord.Exit(ref ptl);
            ReleaseUnused(ref fault, pfn);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        ref FrameInfo info = ref mm.Memory.Info(pfn);
        info.Kind = FrameKind.Anonymous;
        info.MapCount = 1;
        table.WritePte(fault.Location, Pte.MakeLeaf(pfn, fault.Protection, writable: true, special: false) | Pte.Accessed | Pte.Dirty);
        SpinWord.Exit(ref ptl);
        // ptep_clear_flush: other Cpus may cache the read-only zero-frame translation; the zero frame is never freed,
        // so a generation bump (no grace period) is enough for them to see the new frame on their next access.
        mm.Tlb.Bump(fault.Address >> PageGeometry.PageShift, (fault.Address >> PageGeometry.PageShift) + 1);
        fault.Cpu.Counters.Add(VmEvent.AnonPages);
        return FaultResult.Ok;
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
    /// takes it with a read trylock or answers RETRY; the speculative path never gets here (it bails out earlier).
    /// </summary>
    public static FaultResult AnonVmaPrepare(ref FaultContext fault)
    {
        Vma vma = fault.Vma!;
        if (vma.AnonVma is not null)
        {
            return FaultResult.Ok;
        }
        Debug.Assert(!fault.IsSpeculative, "speculative fault without anon_vma must have bailed out");
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
            AnonVma anonVma = FindMergeableAnonVma(mm.Tree, vma) ?? new AnonVma();
            mm.PageTable.EnterPageTableLock();
            vma.AnonVma ??= anonVma;
            mm.PageTable.ExitPageTableLock();
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

    // find_mergeable_anon_vma: the next VMA first, then the previous, if compatible (adjacent, same backing and
    // policy, flags differing only in access bits, page offsets continuous).
    private static AnonVma? FindMergeableAnonVma(VmaTree tree, Vma vma)
    {
        Vma? next = tree.FindFirstEndingAbove(vma.End);
        if (next is not null && VmaMergeRules.AnonVmaCompatible(vma, next) && next.AnonVma is { } fromNext)
        {
            return fromNext;
        }
        Vma? prev = tree.FindLastStartingBelow(vma.Start);
        if (prev is not null && VmaMergeRules.AnonVmaCompatible(prev, vma) && prev.AnonVma is { } fromPrev)
        {
            return fromPrev;
        }
        return null;
    }
}
