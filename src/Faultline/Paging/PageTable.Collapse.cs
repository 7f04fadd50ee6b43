using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// The page-table half of <c>collapse_huge_page</c> (<c>mm/khugepaged.c</c>): taking a PTE table out of its PMD
/// (<c>pmdp_collapse_flush</c>), putting it back when the collapse gives up (<c>pmd_populate</c>), and installing the huge
/// PMD over the emptied slot.
/// </summary>
/// <remarks>
/// The caller holds the mmap lock for write and the VMA's write lock, so neither the classic nor the VMA-lock fault
/// path can reach the table; a speculative fault can, and is turned away by its <c>pmd_same(orig_pmd)</c> check in
/// <c>pte_map_lock</c> once the slot no longer holds the table.
/// </remarks>
internal sealed unsafe partial class PageTable
{
    /// <summary>
    /// <c>pmdp_collapse_flush</c> without the flush: clears the PMD slot covering <paramref name="address"/> under
    /// <c>page_table_lock</c> if it holds a PTE table, and returns the table's pfn (or -1 when the slot is empty, huge or
    /// missing). The caller flushes the TLBs (a grace period) before it reads the detached table's entries as final.
    /// </summary>
    public long DetachPteTable(ulong address, out long pmdTable, out int pmdIndex)
    {
        if (FindPmdSlot(address, out pmdTable, out pmdIndex) != 0)
        {
            return -1;
        }
        EnterPageTableLock();
        ref ulong slot = ref Slot(pmdTable, pmdIndex);
        ulong pmd = Volatile.Read(ref slot);
        if (pmd == 0 || (pmd & (Pte.Present | Pte.Huge)) != Pte.Present)
        {
            ExitPageTableLock();
            return -1;
        }
        // Release store; pairs with the acquire re-read of the PMD in pte_map_lock (the speculative pmd_same check).
        Volatile.Write(ref slot, 0);
        ExitPageTableLock();
        return Pte.Frame(pmd);
    }

    /// <summary><c>pmd_populate</c> of a table <see cref="DetachPteTable"/> took out, when the collapse gives up.</summary>
    public void ReattachPteTable(long pmdTable, int pmdIndex, long pteTable)
    {
        EnterPageTableLock();
        // Release store: the table's entries are visible before the pointer to it (pairs with the walkers' acquire loads).
        Volatile.Write(ref Slot(pmdTable, pmdIndex), Pte.MakeTable(pteTable));
        ExitPageTableLock();
    }

    /// <summary>The 512 entries of a detached PTE table; the caller holds its PTE lock.</summary>
    public Span<ulong> DetachedEntries(long pteTable) => new((ulong*)_memory.FrameAddress(pteTable), EntriesPerTable);

    /// <summary>
    /// Frees a detached, emptied PTE table with <paramref name="gather"/> (after its grace period, so a speculative fault
    /// still inside its walk section never reads a reused page).
    /// </summary>
    public void RetireDetachedTable(long pteTable, MmuGather gather)
    {
        gather.RemoveTable(pteTable);
        Interlocked.Decrement(ref _tablePages);
    }
}
