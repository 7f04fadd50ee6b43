using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>move_page_tables</c> for mremap: the entries of one range are moved, not copied, to another range of the same
/// table. Where both sides are PMD-aligned and a whole PMD span moves, the PTE table itself is re-hooked
/// (<c>move_normal_pmd</c>, also a huge PMD); otherwise entries move one by one under both PTE tables' locks
/// (<c>move_ptes</c>). Frames keep their references, map counts and reverse-map index (the VMA's page offset moves
/// with it), so no per-mm counter changes.
/// </summary>
/// <remarks>
/// Each step clears the old entries and writes the new ones under the old table's lock (and the new one's, or
/// <c>page_table_lock</c> for a PMD), and flushes the old range's TLB entries before dropping them, as the kernel
/// does. The caller opened the sequences of the VMAs involved first, so a speculative fault that validates under the
/// same PTE lock afterwards retries, and one that installed before is moved along with its entry or table. The two PTE
/// locks need no order: only an mmap-lock writer takes two of one address space's PTE locks.
/// </remarks>
internal unsafe struct PageTableMover
{
    private const ulong PmdSpan = PageGeometry.PmdSize;

    private readonly PageTable _table;
    private readonly FrameCache _frames;
    private readonly MmuGather _gather;
    private readonly ProbeSet _probes;

    /// <summary>A mover within <paramref name="table"/>; see <see cref="PageTable.MoveRange"/> for the arguments.</summary>
    public PageTableMover(PageTable table, FrameCache frames, MmuGather gather, ProbeSet probes)
    {
        _table = table;
        _frames = frames;
        _gather = gather;
        _probes = probes;
    }

    /// <summary>Moves [oldStart, oldStart + length) to newStart; returns the bytes moved (short only when out of frames).</summary>
    public ulong Move(ulong oldStart, ulong newStart, ulong length)
    {
        ulong done = 0;
        while (done < length)
        {
            ulong oldAddress = oldStart + done, newAddress = newStart + done;
            ulong emptySpan = _table.FindPmdSlot(oldAddress, out long oldPmdTable, out int oldPmdIndex);
            if (emptySpan != 0)
            {
                // get_old_pud found nothing: the whole aligned span of that level is empty on the old side.
                done += Math.Min(length - done, (oldAddress & ~(emptySpan - 1)) + emptySpan - oldAddress);
                continue;
            }
            // get_extent: up to the next PMD boundary of either side.
            ulong extent = Math.Min(length - done, Math.Min(PmdSpan - (oldAddress & (PmdSpan - 1)), PmdSpan - (newAddress & (PmdSpan - 1))));
            ulong oldPmd = Volatile.Read(ref _table.Entries(oldPmdTable)[oldPmdIndex]);
            if (oldPmd == 0)
            {
                done += extent;
                continue;
            }
            if (!_table.WalkAllocatePmd(newAddress, _frames, out long newPmdTable, out int newPmdIndex))
            {
                break;
            }
            if (extent == PmdSpan && MovePmd(oldPmdTable, oldPmdIndex, newPmdTable, newPmdIndex, oldAddress))
            {
                done += extent;
                continue;
            }
            if ((oldPmd & Pte.Huge) != 0)
            {
                // move_huge_pmd needs the whole PMD at both ends; otherwise split it and move its PTEs (split_huge_pmd).
                _table.SplitHugePmd(oldAddress);
                oldPmd = Volatile.Read(ref _table.Entries(oldPmdTable)[oldPmdIndex]);
            }
            if (!_table.WalkAllocate(newAddress, _frames, out PteLocation newAt))
            {
                break;
            }
            MovePtes(Pte.Frame(oldPmd), oldAddress, newAt.PteTable, newAt.PteIndex, (int)(extent >> PageGeometry.PageShift));
            done += extent;
        }
        return done;
    }

    // move_normal_pmd (and move_huge_pmd): re-hooks the old slot's table (or huge entry) at the new slot, which must be
    // empty. The old PTE table's lock is held across, so a speculative fault that installs into the table does so
    // entirely before the move (and its entry moves with the table) or after (and re-validates, seeing the change).
    private bool MovePmd(long oldPmdTable, int oldPmdIndex, long newPmdTable, int newPmdIndex, ulong oldAddress)
    {
        ref ulong oldSlot = ref _table.Entries(oldPmdTable)[oldPmdIndex];
        ref ulong newSlot = ref _table.Entries(newPmdTable)[newPmdIndex];
        ulong entry = Volatile.Read(ref oldSlot);
        if (Volatile.Read(ref newSlot) != 0)
        {
            return false;
        }
        bool isTable = (entry & Pte.Huge) == 0;
        if (isTable)
        {
            SpinWord.Enter(ref _table.PteLock(Pte.Frame(entry)));
        }
        _table.EnterPageTableLock();
        // Release stores: a lockless walker that reads the new slot sees the table it points to as it was.
        Volatile.Write(ref oldSlot, 0UL);
        Volatile.Write(ref newSlot, entry);
        _gather.NoteTranslationChange(oldAddress);
        _gather.NoteTranslationChange(oldAddress + PmdSpan - PageGeometry.PageSize);
        _probes.Hit(ProbePoint.RemapMovedBeforeFlush);
        _gather.FlushTlb(_probes);
        _table.ExitPageTableLock();
        if (isTable)
        {
            SpinWord.Exit(ref _table.PteLock(Pte.Frame(entry)));
        }
        return true;
    }

    // move_ptes: `count` entries from the old table at oldAddress's index to the new table at newIndex, under both
    // tables' locks; the old range's TLB entries are flushed before the locks go when a present entry moved.
    private void MovePtes(long oldTable, ulong oldAddress, long newTable, int newIndex, int count)
    {
        int oldIndex = (int)((oldAddress >> PageGeometry.PageShift) & (PageGeometry.EntriesPerTable - 1));
        ref int oldLock = ref _table.PteLock(oldTable);
        SpinWord.Enter(ref oldLock);
        bool sameTable = newTable == oldTable;
        if (!sameTable)
        {
            SpinWord.Enter(ref _table.PteLock(newTable));
        }
        ulong* from = _table.Entries(oldTable);
        ulong* to = _table.Entries(newTable);
        bool flush = false;
        for (int i = 0; i < count; i++)
        {
            ulong entry = from[oldIndex + i];
            if (entry == 0)
            {
                continue;
            }
            Debug.Assert(to[newIndex + i] == 0, "the destination of a move is empty");
            Volatile.Write(ref from[oldIndex + i], 0UL);
            // Release store, as set_pte_at: the frame's contents and metadata are visible with the entry. A moved entry
            // becomes soft-dirty (move_soft_dirty_pte): the page is new at its address. A table moved whole keeps its
            // entries as they are, as move_normal_pmd does.
            Volatile.Write(ref to[newIndex + i], entry | Pte.SoftDirty);
            if (Pte.MapsFrame(entry))
            {
                flush = true;
                _gather.NoteTranslationChange(oldAddress + ((ulong)i << PageGeometry.PageShift));
            }
        }
        if (flush)
        {
            _probes.Hit(ProbePoint.RemapMovedBeforeFlush);
            _gather.FlushTlb(_probes);
        }
        if (!sameTable)
        {
            SpinWord.Exit(ref _table.PteLock(newTable));
        }
        SpinWord.Exit(ref oldLock);
    }
}
