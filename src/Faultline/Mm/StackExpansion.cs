using Faultline.Areas;
using Faultline.Concurrency;

namespace Faultline.Mm;

/// <summary>
/// <c>expand_downwards</c> and <c>acct_stack_growth</c> (mm/mmap.c): a fault below a <c>VM_GROWSDOWN</c> VMA moves its
/// start down to the faulting page. Refused when the new start lies below <c>mmap_min_addr</c>, within
/// <c>stack_guard_gap</c> of an accessible VMA below that does not grow down itself, past <c>vm_pgoff</c>, when the VMA
/// would span more than <c>RLIMIT_STACK</c>, or when a <c>VM_LOCKED</c> VMA would lock more than
/// <c>RLIMIT_MEMLOCK</c>. The caller holds the mmap lock for write (the fault path's <c>lock_mm_and_find_vma</c>).
/// </summary>
/// <remarks>
/// The VMA is replaced, not changed in place (a Faultline VMA's range never changes), inside the write section of
/// <see cref="VmaEditor"/>: write-locked for per-VMA-lock readers and its sequence opened for speculative ones, so a
/// fault that found the old VMA without the mmap lock fails its lock or sees the sequence move and retries. Nothing
/// is populated: only the faulting page is, by the fault that follows (a locked stack grown by a fault gets no
/// <c>populate_vma_page_range</c> on Linux either; only exec's <c>find_extend_vma_locked</c> populates).
/// </remarks>
internal static class StackExpansion
{
    /// <summary>
    /// Expands <paramref name="vma"/> (grows-down, starting above <paramref name="address"/>) down to the page of
    /// <paramref name="address"/>; returns the grown VMA that replaced it, or null when the growth is refused (the
    /// fault is then a SIGSEGV with <c>SEGV_MAPERR</c>). Changes nothing on refusal except, as Linux, the anon_vma the
    /// VMA may have been given.
    /// </summary>
    public static Vma? ExpandDownwards(MemoryDescriptor mm, Vma vma, ulong address)
    {
        Debug.Assert(mm.MmapLock.IsWriteLocked, "expand_downwards without the mmap write lock");
        Debug.Assert((vma.Flags & VmFlags.GrowsDown) != 0 && address < vma.Start);
        address &= ~PageGeometry.PageOffsetMask;
        if (address < mm.Settings.MmapMinAddress)
        {
            return null; // EPERM
        }
        // Enforce stack_guard_gap: a VMA below that is accessible and not a stack itself keeps the gap free. The fault
        // found no VMA containing the address, so the one below ends at or below it.
        Vma? prev = mm.Tree.FindLastStartingBelow(vma.Start);
        if (prev is not null && (prev.Flags & VmFlags.GrowsDown) == 0 && (prev.Flags & VmFlags.AccessFlags) != 0
            && address - prev.End < UnmappedAreaSearch.StackGuardGap)
        {
            return null; // ENOMEM
        }
        // The anon_vma before the range moves: the grown part's pages then have a reverse-map anchor from the start.
        AnonVmaPreparation.Prepare(mm, vma);
        ulong size = vma.End - address;
        ulong grow = (vma.Start - address) >> PageGeometry.PageShift;
        if (grow > vma.PageOffset || !AccountStackGrowth(mm, vma.Flags, size, grow))
        {
            return null; // ENOMEM
        }
        var editor = new VmaEditor(mm);
        // vma_start_write first (it waits for VMA-lock readers of the stack, who may take the family lock), then
        // anon_vma_lock_write across the replacement: a reverse-map walk of a relative, which holds no mmap lock of
        // this space, finds the old VMA or the grown one, never neither.
        editor.BeginWrite(vma);
        AnonVma? anonVma = vma.AnonVma;
        anonVma?.EnterFamilyLock();
        Vma grown;
        try
        {
            grown = editor.ExpandDown(vma, address);
        }
        finally
        {
            anonVma?.ExitFamilyLock();
        }
        mm.Tree.Publish();
        editor.EndWriteSections();
        if ((vma.Flags & VmFlags.Locked) != 0)
        {
            mm.LockedPages += (long)grow;
        }
        mm.Probes.Hit(ProbePoint.StackExpanded);
        return grown;
    }

    // acct_stack_growth: the stack limit on the whole new size, and mlock_future_ok for a locked stack. (No
    // RLIMIT_AS here: Faultline has no address-space limit, so may_expand_vm always allows.)
    private static bool AccountStackGrowth(MemoryDescriptor mm, VmFlags flags, ulong size, ulong grow) =>
        size <= mm.Settings.StackLimit && mm.MayLockMore(flags, grow << PageGeometry.PageShift);
}
