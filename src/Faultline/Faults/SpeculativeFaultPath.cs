using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Faults;

/// <summary>
/// The speculative fault (<c>handle_speculative_fault</c> of the SPF series): no mmap lock; the VMA is found without
/// a lock, validated by its sequence count, snapshotted, and re-validated at the last moment under the PTE lock.
/// Every case it cannot prove safe answers <see cref="FaultResult.Retry"/>, counted by reason, and the router falls
/// back to the classic path.
/// </summary>
internal static class SpeculativeFaultPath
{
    /// <summary>Tries the fault speculatively.</summary>
    public static FaultResult Handle(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        EventCounters counters = fault.Cpu.Counters;

        // 1. Only user faults of multi-threaded address spaces (mm_users > 1): a single user cannot race itself.
        if ((fault.Flags & FaultFlags.User) == 0)
        {
            return FaultResult.Retry;
        }
        if (mm.Users <= 1)
        {
            counters.Add(VmEvent.SpeculativeSingleUser);
            return FaultResult.Retry;
        }
        // Peter's WARN_ON_ONCE: a speculative fault cannot honour RETRY_NOWAIT (it has no lock to drop).
        Debug.Assert((fault.Flags & FaultFlags.RetryNoWait) == 0, "speculative fault with FAULT_FLAG_RETRY_NOWAIT");
        if ((fault.Flags & FaultFlags.RetryNoWait) != 0)
        {
            return FaultResult.Retry;
        }
        fault.Flags = (fault.Flags & ~(FaultFlags.AllowRetry | FaultFlags.Killable)) | FaultFlags.Speculative;

        // The walk section covers the whole attempt (the SRCU of the patches): the VMA found below, and the tree nodes
        // that led to it, are not reused for another mapping until it ends. It never blocks a writer, so the attempt
        // may sleep inside it.
        RcuReader reader = fault.Cpu.Reader;
        reader.EnterWalk(mm.Rcu.WalkEpoch);
        try
        {
            return HandleInWalk(ref fault);
        }
        finally
        {
            reader.ExitWalk();
        }
    }

    private static FaultResult HandleInWalk(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        EventCounters counters = fault.Cpu.Counters;

        // 2. get_vma: lock-free lookup, inside the walk section.
        Vma? vma = mm.Tree.LookupLockless(fault.Address);
        if (vma is null)
        {
            counters.Add(VmEvent.SpeculativeNoVma);
            return FaultResult.Retry;
        }
        fault.Vma = vma;
        mm.Probes.Hit(ProbePoint.SpeculativeAfterLookup);

        // 3. The sequence: odd means a writer is inside.
        int sequence = vma.Sequence.ReadRaw();
        if ((sequence & 1) != 0 || vma.IsDetached)
        {
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }

        // 4. and 6. Snapshot, then the bail-outs on the snapshot.
        VmFlags flags = vma.Flags;
        PageProtection protection = vma.PageProtection;
        ulong start = vma.Start, end = vma.End, pageOffset = vma.PageOffset;
        Backing.IBacking backing = vma.Backing;
        // The per-backing whitelist the SPF v2 review (2017-08) asked for: shared anonymous memory is handled here (its
        // lookup is lock-free and never sleeps; finish_fault re-checks the page under pte_map_lock and RETRYs on change).
        if (!backing.IsSpeculativeSafe
            || (backing.IsAnonymous && vma.AnonVma is null)
            || (flags & (VmFlags.UserfaultFlags | VmFlags.GrowsDown)) != 0
            || vma.Policy == MemoryPolicy.Interleave)
        {
            counters.Add(VmEvent.SpeculativeVmaNotSupported);
            return FaultResult.Retry;
        }
        if (fault.Address < start || fault.Address >= end)
        {
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }
        // 5. Access check on the snapshot; a SIGSEGV is reported only once the snapshot is proven current.
        if (AccessCheck.IsError(flags, fault.Access))
        {
            if (vma.Sequence.Retry(sequence))
            {
                counters.Add(VmEvent.SpeculativeVmaChanged);
                return FaultResult.Retry;
            }
            counters.Add(VmEvent.SpeculativeVmaAccess);
            counters.Add(VmEvent.SegvAccErr);
            return FaultResult.SigSegv;
        }
        if (backing is Backing.DeviceBacking)
        {
            // MMIO: no page table to walk; the device is reached with the VMA read-locked, no mmap lock.
            return fault.Cpu.Device.PerformSpeculative(ref fault, vma, sequence);
        }
        fault.VmaFlags = flags;
        fault.Protection = protection;
        fault.Sequence = sequence;
        // 8. pgoff from the snapshot.
        fault.PageOffset = pageOffset + ((fault.Address - start) >> PageGeometry.PageShift);
        if (vma.Sequence.Retry(sequence))
        {
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }
        mm.Probes.Hit(ProbePoint.SpeculativeAfterSnapshot);

        // 7. The lock-free walk inside a read section: table pages it reaches cannot be freed meanwhile.
        FaultResult walked = Walk(ref fault);
        if (walked != FaultResult.Ok)
        {
            return walked;
        }
        // 8. Re-validate after leaving the section (read_seqcount_retry).
        if (vma.Sequence.Retry(sequence))
        {
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }
        mm.Probes.Hit(ProbePoint.SpeculativeBeforeHandle);

        // 9.-12. handle_pte_fault with the Speculative flag, inside the memcg OOM section of the SPF series
        // ("mm: provide speculative fault infrastructure", v11, 2018-05-17).
        FaultResult result = MemcgOomSection.Run(ref fault, static (ref FaultContext f) => MemoryFaultHandler.HandlePteFault(ref f));
        if ((result & FaultResult.Oom) != 0 && fault.Cpu.Memcg.Group is not null)
        {
            // A charge over the group's limit: v11 hands VM_FAULT_OOM to pagefault_out_of_memory, whose memcg OOM
            // handling ends by refaulting the access. Here the record is dropped and the classic path refaults at once:
            // it charges again under the mmap lock (an uncharge meanwhile may have made room) and, if that fails too,
            // records the group itself for the fault's end to reclaim from. So no speculative attempt ever leaves
            // memcg OOM state behind, and only the classic path's own failure reaches the group's OOM handling.
            fault.Cpu.Memcg.Clear();
            counters.Add(VmEvent.SpeculativeMemcgCharge);
            return FaultResult.Retry;
        }
        if ((result & FaultResult.Retry) == 0)
        {
            counters.Add(VmEvent.SpeculativeSuccess);
        }
        return result;
    }

    private static FaultResult Walk(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        EventCounters counters = fault.Cpu.Counters;
        fault.Cpu.Reader.Enter();
        WalkStatus status = table.WalkLockless(fault.Address, out fault.Location, out fault.OriginalPte);
        mm.Probes.Hit(ProbePoint.SpeculativeInWalk);
        fault.Cpu.Reader.Exit();
        switch (status)
        {
            case WalkStatus.Ok:
                fault.HasPteTable = true;
                return FaultResult.Ok;
            case WalkStatus.UpperBad:
            case WalkStatus.HugePmd:
                // A huge PMD is the classic path's (the SPF series aborts on pmd_trans_huge).
                counters.Add(VmEvent.SpeculativePmdChanged);
                return FaultResult.Retry;
        }
        if (status == WalkStatus.PmdNone
            && HugePmdFault.IsEligible(fault.Vma!, fault.VmaFlags, mm.Settings, fault.Address))
        {
            // An empty PMD in a huge-eligible range: the huge fault needs the mmap or VMA lock, so the classic path
            // takes it rather than this path allocating a PTE table where a huge page belongs. (A VMA's range never
            // changes, an edit replaces it, so its bounds are stable; the flags are the snapshot.)
            counters.Add(VmEvent.SpeculativePmdChanged);
            return FaultResult.Retry;
        }
        if (!mm.Settings.SpeculativePageTableAllocation)
        {
            // The first fault of a PMD instantiates it on the classic path.
            counters.Add(VmEvent.SpeculativePmdChanged);
            return FaultResult.Retry;
        }
        var check = new VmaChangeCheck(fault.Vma!, fault.Sequence);
        int tablesBefore = table.TablePages;
        if (!table.WalkAllocateSpeculative(fault.Address, fault.Cpu.Frames, ref check, mm.Probes, out fault.Location, out bool outOfMemory))
        {
            if (outOfMemory)
            {
                return FaultResult.Oom;
            }
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }
        counters.Add(VmEvent.SpeculativeTableAlloc, Math.Max(0, table.TablePages - tablesBefore));
        fault.Cpu.Reader.Enter();
        fault.OriginalPte = table.ReadPte(fault.Location);
        fault.Cpu.Reader.Exit();
        fault.HasPteTable = true;
        return FaultResult.Ok;
    }
}
