using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// <c>collapse_huge_page</c> (<c>mm/khugepaged.c</c>): replaces the 512 PTEs of one 2 MiB-aligned block of a
/// huge-eligible anonymous VMA by one huge PMD over a fresh huge block holding a copy of the pages. Used by
/// <c>MADV_COLLAPSE</c> and by the background scanner (<c>khugepaged</c>).
/// </summary>
/// <remarks>
/// <para>
/// Order, as in the kernel: with the mmap lock held for write and the VMA write-locked (so the classic and VMA-lock
/// fault paths are out), the huge block and the table to deposit are allocated; the PMD is cleared under
/// <c>page_table_lock</c> and the TLBs flushed with a grace period (<c>pmdp_collapse_flush</c>), which no lockless walker
/// survives; the PTE lock is then taken, so a speculative fault that won it before the clear has finished. A speculative
/// fault that read the table before the clear fails its <c>pmd_same(orig_pmd)</c> check in <c>pte_map_lock</c> and
/// retries: that check exists for this writer ("Speculative page faults" v9, 2018-03, and v11, 2018-05). Only then are
/// the entries final: they are checked, copied, the huge PMD installed, and the old pages and the emptied table go to a
/// gather, freed after a second grace period.
/// </para>
/// <para>
/// Refusals (nothing changes, the table goes back): more empty or zero-page entries than <c>max_ptes_none</c>
/// (<c>SCAN_EXCEED_NONE_PTE</c>, EBUSY), no writable entry (<c>SCAN_PAGE_RO</c>, so a block fork left copy-on-write
/// is kept), more pages mapped more than once than <c>max_ptes_shared</c>, a swap entry (this collapse does not swap
/// in: as <c>max_ptes_swap</c> 0), a userfaultfd write-protected or write-tracked entry, a page not anonymous
/// (EINVAL); a pinned page or one with references beyond its mappings (<c>SCAN_PAGE_COUNT</c>, EAGAIN). No huge block
/// free: <c>thp_collapse_alloc_failed</c>, ENOMEM. Thread-safety: the caller holds the mmap lock for write.
/// </para>
/// </remarks>
internal static class HugePageCollapse
{
    /// <summary><c>khugepaged_max_ptes_none</c>'s default, <c>HPAGE_PMD_NR - 1</c>.</summary>
    public const int DefaultMaxPtesNone = PhysicalMemory.HugeFrames - 1;

    /// <summary><c>khugepaged_max_ptes_shared</c>'s default, <c>HPAGE_PMD_NR / 2</c>.</summary>
    public const int DefaultMaxPtesShared = PhysicalMemory.HugeFrames / 2;

    /// <summary>
    /// Whether <paramref name="vma"/> may hold a huge PMD at the block around <paramref name="address"/> for a collapse:
    /// the fault rules with <paramref name="mode"/> (<c>MADV_COLLAPSE</c> passes <c>always</c>, as it ignores the sysfs
    /// setting), and no user-fault registration.
    /// </summary>
    public static bool IsEligible(Vma vma, TransparentHugePageMode mode, ulong address) =>
        (vma.Flags & VmFlags.UserfaultFlags) == 0
        && ThpPolicy.MayUseHugePage(vma.Flags, vma.Backing.IsAnonymous, vma.Start, vma.End, mode, address);

    /// <summary>
    /// Collapses the block at <paramref name="block"/> (2 MiB-aligned, inside <paramref name="vma"/>, eligible). Returns
    /// <see cref="Errno.None"/> when the block is now one huge PMD (also when it already was), else the errno
    /// <c>madvise_collapse_errno</c> gives the refusal. Caller: mmap lock held for write.
    /// </summary>
    public static Errno CollapseBlock(MemoryDescriptor mm, Vma vma, ulong block, FrameCache frames, int maxPtesNone,
        int maxPtesShared)
    {
        PageTable table = mm.PageTable;
        if (table.FindPmdSlot(block, out long pmdTable, out int pmdIndex) != 0)
        {
            return Errno.EINVAL; // SCAN_PMD_NULL
        }
        ulong pmd = table.ReadPmdSlot(pmdTable, pmdIndex);
        if ((pmd & Pte.Huge) != 0)
        {
            return Errno.None; // SCAN_PMD_MAPPED
        }
        if (pmd == 0 || vma.AnonVma is null)
        {
            return Errno.EINVAL; // SCAN_PMD_NULL
        }
        // vma_start_write: VMA-lock faults are out until the mmap write lock is released.
        vma.StartWrite();
        PhysicalMemory memory = mm.Memory;
        if (!memory.TryAllocateHuge(out long head))
        {
            mm.SharedCounters.AddShared(VmEvent.ThpCollapseAllocFailed);
            return Errno.ENOMEM; // SCAN_ALLOC_HUGE_PAGE_FAIL
        }
        if (mm.Group is { } group && !group.TryCharge(head, PhysicalMemory.HugeFrames, FrameKind.Anonymous))
        {
            // SCAN_CGROUP_CHARGE_FAIL: the block is charged before the 512 pages it replaces are uncharged.
            memory.FreeHuge(head);
            return Errno.EBUSY;
        }
        int deposit = table.AllocateDeposit(frames);
        if (deposit == PhysicalMemory.NoFrame)
        {
            memory.FreeHuge(head);
            mm.SharedCounters.AddShared(VmEvent.ThpCollapseAllocFailed);
            return Errno.ENOMEM;
        }
        MmuGather gather = mm.RentGather();
        try
        {
            long pteTable = table.DetachPteTable(block, out pmdTable, out pmdIndex);
            Debug.Assert(pteTable >= 0, "the PMD held a table under the mmap write lock");
            // pmdp_collapse_flush: every Cpu's translations of the block go, and every lockless walk that could have
            // read the table has ended.
            gather.NoteTranslationChange(block);
            gather.NoteTranslationChange(block + PageGeometry.PmdSize - PageGeometry.PageSize);
            gather.FlushTlb(mm.Probes);
            mm.Probes.Hit(ProbePoint.CollapseAfterPmdFlush);
            ref int ptl = ref table.PteLock(pteTable);
            SpinWord.Enter(ref ptl);
            Span<ulong> entries = table.DetachedEntries(pteTable);
            Errno refused = Check(memory, entries, maxPtesNone, maxPtesShared);
            if (refused != Errno.None)
            {
                SpinWord.Exit(ref ptl);
                table.ReattachPteTable(pmdTable, pmdIndex, pteTable);
                memory.FreeHuge(head);
                table.ReleaseDeposit(deposit, frames);
                return refused;
            }
            long anonymous = CopyAndRelease(memory, entries, head, gather);
            SpinWord.Exit(ref ptl);
            memory.SetNewHugeAnonymous(head, vma.AnonVma, vma.PageOffset + ((block - vma.Start) >> PageGeometry.PageShift));
            bool writable = (vma.Flags & VmFlags.Write) != 0;
            ulong entry = Pte.MakeLeaf(head, vma.PageProtection, writable, special: false) | Pte.Huge | Pte.Accessed
                | (writable ? Pte.DirtyBits : 0);
            bool installed = table.TryInstallHugePmd(pmdTable, pmdIndex, entry, deposit, frames);
            Debug.Assert(installed, "the cleared PMD stays empty under the mmap write lock");
            table.RetireDetachedTable(pteTable, gather);
            mm.SharedCounters.AddShared(VmEvent.AnonPages, PhysicalMemory.HugeFrames - anonymous);
            mm.SharedCounters.AddShared(VmEvent.ThpCollapseAlloc);
            return Errno.None;
        }
        finally
        {
            // The old pages and the table are freed after this grace period (tlb_remove_table).
            gather.Finish(mm.Probes);
            mm.ReturnGather(gather);
        }
    }

    /// <summary>
    /// <c>madvise_collapse</c> over [<paramref name="start"/>, <paramref name="end"/>) (page-aligned): every 2 MiB block
    /// inside it is collapsed, ignoring the sysfs mode and <c>max_ptes_none</c>. EINVAL when the first VMA may not hold
    /// huge pages; ENOMEM over a hole or when no huge block is free; otherwise the errno of the last block refused, or
    /// none when every block is now huge. Takes the mmap lock for write.
    /// </summary>
    public static Errno CollapseRange(MemoryDescriptor mm, object owner, ulong start, ulong end)
    {
        ulong first = (start + PageGeometry.PmdSize - 1) & ~(PageGeometry.PmdSize - 1);
        ulong last = end & ~(PageGeometry.PmdSize - 1);
        mm.EnterWriteUnlessExiting(owner);
        var frames = new FrameCache(mm.Memory);
        try
        {
            Vma? vma = mm.Tree.FindFirstEndingAbove(start);
            if (vma is null || vma.Start >= end)
            {
                return Errno.ENOMEM;
            }
            // thp_vma_allowable_order on the flags alone, before the range is looked at.
            if (!vma.Backing.IsAnonymous
                || (vma.Flags & (VmFlags.Shared | VmFlags.SpecialMask | VmFlags.NoHugePage | VmFlags.UserfaultFlags)) != 0)
            {
                return Errno.EINVAL;
            }
            Errno lastFailure = Errno.None;
            for (ulong block = first; block < last && block >= first; block += PageGeometry.PmdSize)
            {
                vma = mm.Tree.FindFirstEndingAbove(block);
                if (vma is null || vma.Start > block)
                {
                    return Errno.ENOMEM;
                }
                Errno result = IsEligible(vma, TransparentHugePageMode.Always, block)
                    ? CollapseBlock(mm, vma, block, frames, PhysicalMemory.HugeFrames, PhysicalMemory.HugeFrames)
                    : Errno.EINVAL;
                if (result is Errno.ENOMEM or Errno.EBUSY)
                {
                    return result;
                }
                if (result != Errno.None)
                {
                    // The refusals madvise_collapse moves past, remembering the last.
                    lastFailure = result;
                }
            }
            return lastFailure;
        }
        finally
        {
            frames.DrainAll();
            mm.MmapLock.ExitWrite();
        }
    }

    // __collapse_huge_page_isolate's checks on the detached table's final entries.
    private static Errno Check(PhysicalMemory memory, Span<ulong> entries, int maxPtesNone, int maxPtesShared)
    {
        int none = 0, shared = 0;
        bool writable = false;
        foreach (ulong pte in entries)
        {
            if (Pte.IsNone(pte) || (Pte.IsPresent(pte) && Pte.Frame(pte) == PhysicalMemory.ZeroFrame))
            {
                none++;
                continue;
            }
            if (Pte.IsSwap(pte) || (pte & (Pte.UffdWp | Pte.WriteNotify | Pte.Special)) != 0)
            {
                return Errno.EINVAL;
            }
            long pfn = Pte.Frame(pte);
            ref FrameInfo info = ref memory.Info(pfn);
            if (info.Kind != FrameKind.Anonymous)
            {
                return Errno.EINVAL; // SCAN_PAGE_ANON
            }
            // Acquire reads; pair with the Interlocked updates of pins, gets and map counts.
            int mapCount = Volatile.Read(ref info.MapCount);
            if (mapCount > 1 && ++shared > maxPtesShared)
            {
                return Errno.EINVAL; // SCAN_EXCEED_SHARED_PTE
            }
            if (memory.IsPinned(pfn) || (!memory.IsHugeFrame(pfn) && Volatile.Read(ref info.RefCount) != mapCount))
            {
                return Errno.EAGAIN; // SCAN_PAGE_COUNT
            }
            writable |= (pte & Pte.Writable) != 0;
        }
        if (none > maxPtesNone)
        {
            return Errno.EBUSY; // SCAN_EXCEED_NONE_PTE
        }
        return writable ? Errno.None : Errno.EINVAL; // SCAN_PAGE_RO
    }

    // __collapse_huge_page_copy: each page into its place in the block (zero where none), and its mapping dropped with
    // the gather. Returns the anonymous pages unmapped.
    private static long CopyAndRelease(PhysicalMemory memory, Span<ulong> entries, long head, MmuGather gather)
    {
        long anonymous = 0;
        for (int i = 0; i < entries.Length; i++)
        {
            ulong pte = entries[i];
            long pfn = Pte.Frame(pte);
            if (Pte.IsNone(pte) || pfn == PhysicalMemory.ZeroFrame)
            {
                memory.PrepareZeroed(head + i);
            }
            else
            {
                memory.Copy(pfn, head + i);
                if (gather.RemoveMapping(pfn))
                {
                    anonymous++;
                }
            }
            entries[i] = 0;
        }
        return anonymous;
    }
}
