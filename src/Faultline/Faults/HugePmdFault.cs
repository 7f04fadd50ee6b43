using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Faults;

/// <summary>
/// Faults at the PMD level (<c>__handle_mm_fault</c>'s huge branches, <c>mm/huge_memory.c</c>): a first touch of an
/// empty PMD in a huge-eligible range maps a zeroed 2 MiB block or the huge zero page
/// (<c>do_huge_pmd_anonymous_page</c>), a write to a read-only huge PMD reuses or splits it
/// (<c>do_huge_pmd_wp_page</c>), anything else marks it young (<c>huge_pmd_set_accessed</c>).
/// </summary>
/// <remarks>
/// <para>
/// Only the classic and VMA-lock paths come here, as in the kernel, which handles huge anonymous faults under the VMA
/// lock. The speculative path never does: its walk aborts on a huge PMD, and on an empty PMD in a huge-eligible range
/// it hands the fault to the classic path (the SPF series bails out the same way), so it never allocates a PTE table
/// where a huge page belongs.
/// </para>
/// <para>
/// Every change is made under <c>page_table_lock</c> after checking that the PMD is still what the fault read
/// (<c>pmd_none</c> or <c>pmd_same(orig_pmd)</c>); a fault that loses the check gives back what it allocated and lets
/// the access retry. Without a free huge block the fault falls back to 4 KiB pages (<c>thp_fault_fallback</c>).
/// </para>
/// <para>
/// A write to a huge PMD shared by fork is split and copied one 4 KiB page at a time, as Linux does since 5.8 (no 2 MiB
/// copy on a write of a few bytes); a block this mapping owns alone (<see cref="PhysicalMemory.IsExclusiveAnonymous"/>)
/// is reused whole. A write to the huge zero page allocates a huge page, or splits the zero PMD and copies one page.
/// </para>
/// </remarks>
internal static class HugePmdFault
{
    /// <summary>
    /// Whether a fault in <paramref name="vma"/> at <paramref name="address"/> may map a huge page: the policy
    /// (<see cref="ThpPolicy"/>), and no user-fault registration (its handler resolves missing pages 4 KiB at a time).
    /// </summary>
    public static bool IsEligible(Vma vma, VmFlags flags, in MmSettings settings, ulong address) =>
        (flags & VmFlags.UserfaultFlags) == 0
        && ThpPolicy.MayUseHugePage(flags, vma.Backing.IsAnonymous, vma.Start, vma.End, settings.TransparentHugePages, address);

    /// <summary>
    /// <c>create_huge_pmd</c> for an empty PMD in a huge-eligible range. True with <paramref name="result"/> when the
    /// fault is done (a huge PMD is mapped, a race was lost, or it failed); false when the 4 KiB path must handle it:
    /// the PMD is not empty, or no huge block was free (<c>VM_FAULT_FALLBACK</c>).
    /// </summary>
    public static bool TryAnonymous(ref FaultContext fault, out FaultResult result)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        result = FaultResult.Ok;
        if (!table.WalkAllocatePmd(fault.Address, fault.Cpu.Frames, out long pmdTable, out int pmdIndex))
        {
            result = FaultResult.Oom;
            return true;
        }
        if (table.ReadPmdSlot(pmdTable, pmdIndex) != 0)
        {
            return false;
        }
        FaultResult prepared = MemoryFaultHandler.AnonVmaPrepare(ref fault);
        if (prepared != FaultResult.Ok)
        {
            result = prepared;
            return true;
        }
        if (!fault.IsWrite && mm.Settings.MapZeroPageOnRead)
        {
            return MapHugeZeroPage(ref fault, pmdTable, pmdIndex, out result);
        }
        if (!mm.Memory.TryAllocateHuge(out long head))
        {
            fault.Cpu.Counters.Add(VmEvent.ThpFaultFallback);
            return false;
        }
        if (!FaultCharge.TryCharge(ref fault, head, PhysicalMemory.HugeFrames, FrameKind.Anonymous))
        {
            // thp_fault_fallback_charge: the group has no room for the block; 4 KiB pages may still fit.
            mm.Memory.FreeHuge(head);
            fault.Cpu.Counters.Add(VmEvent.ThpFaultFallback);
            return false;
        }
        int deposit = table.AllocateDeposit(fault.Cpu.Frames);
        if (deposit == PhysicalMemory.NoFrame)
        {
            mm.Memory.FreeHuge(head);
            result = FaultResult.Oom;
            return true;
        }
        mm.Memory.PrepareZeroedHuge(head);
        mm.Probes.Hit(ProbePoint.HugeFaultBeforePmdLock);
        // "if (vma->vm_flags & VM_WRITE) entry = pmd_mkwrite(pmd_mkdirty(entry))", as for a 4 KiB page.
        bool writable = (fault.VmaFlags & VmFlags.Write) != 0;
        ulong entry = Pte.MakeLeaf(head, fault.Protection, writable, special: false) | Pte.Huge | Pte.Accessed
            | (writable ? Pte.DirtyBits : 0);
        mm.Memory.SetNewHugeAnonymous(head, fault.Vma!.AnonVma, BlockPageOffset(ref fault));
        if (!table.TryInstallHugePmd(pmdTable, pmdIndex, entry, deposit, fault.Cpu.Frames))
        {
            mm.Memory.FreeHuge(head);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return true;
        }
        fault.Cpu.Counters.Add(VmEvent.ThpFaultAlloc);
        fault.Cpu.Counters.Add(VmEvent.AnonPages, PhysicalMemory.HugeFrames);
        return true;
    }

    /// <summary>
    /// A fault that found a huge PMD (<paramref name="pmd"/>, read by the walk at <see cref="FaultContext.Location"/>).
    /// True with <paramref name="result"/> when handled; false when the PMD was split and the 4 KiB path must run.
    /// </summary>
    public static bool HandleHugePmd(ref FaultContext fault, ulong pmd, out FaultResult result)
    {
        result = FaultResult.Ok;
        if (fault.IsWrite && (pmd & Pte.Writable) == 0 && Pte.IsPresent(pmd))
        {
            return WriteProtectedHugePmd(ref fault, pmd, out result);
        }
        // huge_pmd_set_accessed: spurious (another Cpu raced) or a PROT_NONE entry left by a widening mprotect.
        ulong young = pmd | Pte.Accessed | (fault.IsWrite ? Pte.DirtyBits : 0);
        if (young != pmd)
        {
            fault.Mm.PageTable.TryReplaceHugePmd(fault.Location.PmdTable, fault.Location.PmdIndex, pmd, young);
        }
        return true;
    }

    // do_huge_pmd_wp_page on a present read-only huge PMD of a writable VMA.
    private static bool WriteProtectedHugePmd(ref FaultContext fault, ulong pmd, out FaultResult result)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        result = FaultResult.Ok;
        fault.Cpu.Counters.Add(VmEvent.WriteProtectFault);
        mm.Probes.Hit(ProbePoint.HugeWriteProtectBeforePmdLock);
        long head = Pte.Frame(pmd);
        if ((pmd & Pte.Special) != 0)
        {
            return WriteHugeZeroPage(ref fault, pmd, out result);
        }
        // A write-tracked PMD (the dirty log, a write watch) splits: the 4 KiB path notifies page by page.
        if ((pmd & Pte.WriteNotify) == 0 && mm.Memory.IsExclusiveAnonymous(head))
        {
            ulong reused = pmd | Pte.Writable | Pte.DirtyBits | Pte.Accessed;
            if (table.TryReplaceHugePmd(fault.Location.PmdTable, fault.Location.PmdIndex, pmd, reused))
            {
                fault.Cpu.Counters.Add(VmEvent.CowReuse);
            }
            else
            {
                // pmd_same failed: split, zapped or reprotected meanwhile; the access walks again.
                fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            }
            return true;
        }
        // Shared with a forked relative: split, and the 4 KiB path copies only the page written.
        table.SplitHugePmd(fault.Address);
        return false;
    }

    // do_huge_pmd_wp_page on the huge zero page: a huge page when a block is free, else split and copy 4 KiB.
    private static bool WriteHugeZeroPage(ref FaultContext fault, ulong pmd, out FaultResult result)
    {
        MemoryDescriptor mm = fault.Mm;
        PageTable table = mm.PageTable;
        result = MemoryFaultHandler.AnonVmaPrepare(ref fault);
        if (result != FaultResult.Ok)
        {
            return true;
        }
        if (!mm.Memory.TryAllocateHuge(out long head))
        {
            fault.Cpu.Counters.Add(VmEvent.ThpFaultFallback);
            table.SplitHugePmd(fault.Address);
            return false;
        }
        if (!FaultCharge.TryCharge(ref fault, head, PhysicalMemory.HugeFrames, FrameKind.Anonymous))
        {
            mm.Memory.FreeHuge(head);
            fault.Cpu.Counters.Add(VmEvent.ThpFaultFallback);
            table.SplitHugePmd(fault.Address);
            return false;
        }
        mm.Memory.PrepareZeroedHuge(head);
        mm.Memory.SetNewHugeAnonymous(head, fault.Vma!.AnonVma, BlockPageOffset(ref fault));
        ulong entry = Pte.MakeLeaf(head, fault.Protection, writable: true, special: false) | Pte.Huge | Pte.Accessed | Pte.DirtyBits;
        if (!table.TryReplaceHugePmd(fault.Location.PmdTable, fault.Location.PmdIndex, pmd, entry))
        {
            mm.Memory.FreeHuge(head);
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
            return true;
        }
        // Other Cpus may hold read-only translations of the huge zero page, which is never freed: a generation bump
        // (no grace period) makes their next access see the new block, as for the 4 KiB zero frame.
        ulong first = (fault.Address & ~(PageGeometry.PmdSize - 1)) >> PageGeometry.PageShift;
        mm.Tlb.Bump(first, first + PhysicalMemory.HugeFrames);
        fault.Cpu.Counters.Add(VmEvent.ThpFaultAlloc);
        fault.Cpu.Counters.Add(VmEvent.AnonPages, PhysicalMemory.HugeFrames);
        return true;
    }

    // do_huge_pmd_anonymous_page's read case: the huge zero page, mapped read-only (set_huge_zero_folio).
    private static bool MapHugeZeroPage(ref FaultContext fault, long pmdTable, int pmdIndex, out FaultResult result)
    {
        MemoryDescriptor mm = fault.Mm;
        result = FaultResult.Ok;
        if (!mm.Memory.TryGetHugeZeroFrame(out long zero, out bool allocated))
        {
            fault.Cpu.Counters.Add(VmEvent.ThpFaultFallback);
            return false;
        }
        if (allocated)
        {
            fault.Cpu.Counters.Add(VmEvent.ThpZeroPageAlloc);
        }
        int deposit = mm.PageTable.AllocateDeposit(fault.Cpu.Frames);
        if (deposit == PhysicalMemory.NoFrame)
        {
            result = FaultResult.Oom;
            return true;
        }
        ulong entry = Pte.MakeLeaf(zero, fault.Protection, writable: false, special: true) | Pte.Huge | Pte.Accessed;
        if (!mm.PageTable.TryInstallHugePmd(pmdTable, pmdIndex, entry, deposit, fault.Cpu.Frames))
        {
            fault.Cpu.Counters.Add(VmEvent.FaultRaceLost);
        }
        return true;
    }

    // The page offset of the block's first page: the faulting page's offset less its index in the block.
    private static ulong BlockPageOffset(ref FaultContext fault) =>
        fault.PageOffset - ((fault.Address & (PageGeometry.PmdSize - 1)) >> PageGeometry.PageShift);
}
