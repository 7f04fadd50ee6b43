using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// <c>change_pte_range</c> and <c>change_huge_pmd</c> as a walk: rewrites the protection of every entry mapping a
/// frame, noting in the gather each translation it narrows.
/// </summary>
internal unsafe struct ChangeProtectionVisitor : IPageRangeVisitor
{
    private readonly PageTable _table;
    private readonly PhysicalMemory _memory;
    private readonly PageProtection _protection;
    private readonly bool _vmaMayWrite;
    private readonly MmuGather _gather;
    private readonly bool _softDirtyEnabled;
    private readonly ProbeSet? _probes;

    /// <summary>
    /// A change to <paramref name="protection"/>; <paramref name="vmaMayWrite"/> says whether the VMA's new flags let a
    /// PTE be writable at all (private and writable); <paramref name="softDirtyEnabled"/> that the VMA's soft-dirty bits
    /// are tracked (<c>vma_soft_dirty_enabled</c>), so an entry not yet soft-dirty must fault on its first write.
    /// <paramref name="probes"/>: the address space's, for <see cref="ProbePoint.ChangeHugePmdBeforeUpdate"/>.
    /// </summary>
    public ChangeProtectionVisitor(PageTable table, PageProtection protection, bool vmaMayWrite, MmuGather gather, bool softDirtyEnabled = false,
        ProbeSet? probes = null)
    {
        _softDirtyEnabled = softDirtyEnabled;
        _probes = probes;
        _table = table;
        _memory = table.Memory;
        _protection = protection;
        _vmaMayWrite = vmaMayWrite;
        _gather = gather;
    }

    /// <summary>Rewrites the entries under the table's PTE lock.</summary>
    public void VisitPteTable(long pteTable, int firstIndex, int endIndex, ulong tableBase)
    {
        ref int ptl = ref _table.PteLock(pteTable);
        SpinWord.Enter(ref ptl);
        ulong* entries = _table.Entries(pteTable);
        for (int i = firstIndex; i < endIndex; i++)
        {
            ulong entry = entries[i];
            if (!Pte.MapsFrame(entry))
            {
                continue;
            }
            ulong updated = Update(ref entries[i], ref entry, 0);
            if (updated == entry)
            {
                continue;
            }
            if (Narrows(entry, updated))
            {
                _gather.NoteTranslationChange(tableBase + ((ulong)i << PageGeometry.PageShift));
            }
        }
        SpinWord.Exit(ref ptl);
    }

    /// <summary>Rewrites the huge PMD under <c>page_table_lock</c> (the kernel's <c>pmd_lock</c>), keeping it huge.</summary>
    public void VisitHugePmd(long pmdTable, int pmdIndex, ulong address)
    {
        _table.EnterPageTableLock();
        ref ulong slot = ref _table.Entries(pmdTable)[pmdIndex];
        ulong entry = Volatile.Read(ref slot);
        ulong updated = Pte.MapsFrame(entry) ? Update(ref slot, ref entry, Pte.Huge) : entry;
        _table.ExitPageTableLock();
        if (Narrows(entry, updated))
        {
            _gather.NoteTranslationChange(address);
            _gather.NoteTranslationChange(address + PageGeometry.PmdSize - PageGeometry.PageSize);
        }
    }

    // pmdp_invalidate_ad / ptep_modify_prot_start then the commit, as one atomic read-modify-write: a Cpu's TLB fill sets
    // accessed and dirty with a CAS and no lock, so a plain store of the new entry could drop a dirty bit set after the
    // read (and a page written after MADV_FREE would look clean). The CAS (full fence) pairs with the fill's CAS: either
    // the fill's bits are in `entry` when this one succeeds, or the fill's CAS fails and it walks again. Returns the
    // entry written; `entry` is the one it replaced.
    private ulong Update(ref ulong slot, ref ulong entry, ulong keep)
    {
        while (true)
        {
            ulong updated = Pte.Modify(entry, _protection, CanChangePteWritable(entry)) | keep;
            if (updated == entry)
            {
                return updated;
            }
            if (keep != 0)
            {
                _probes?.Hit(ProbePoint.ChangeHugePmdBeforeUpdate);
            }
            ulong seen = Interlocked.CompareExchange(ref slot, updated, entry);
            if (seen == entry)
            {
                return updated;
            }
            entry = seen;
        }
    }

    /// <summary>
    /// <c>can_change_pte_writable</c>: a PTE may become writable in place only for a frame this mapping owns alone
    /// (an exclusive anonymous frame) or a shared-memory page; any other must fault to copy or to be tracked.
    /// </summary>
    private bool CanChangePteWritable(ulong entry)
    {
        // userfaultfd_pte_wp: a page a user-fault channel write-protected stays read-only until the channel lifts it.
        if (!_vmaMayWrite || (entry & (Pte.Special | Pte.UffdWp)) != 0)
        {
            // Host memory is only mapped shared and wants no write notification: writable in place, like shmem.
            return _vmaMayWrite && HostWindow.Contains(Pte.Frame(entry));
        }
        // pte_needs_soft_dirty_wp and the dirty log's or a write watch's arming: the next write must fault to be seen.
        if ((entry & Pte.WriteNotify) != 0 || (_softDirtyEnabled && (entry & Pte.SoftDirty) == 0))
        {
            return false;
        }
        // A shared-memory page is only ever mapped by shared VMAs, whose vm_page_prot is writable when they are
        // (shmem wants no write notification): pte_modify makes its PTE writable, clean or dirty as it was.
        return _memory.Info(Pte.Frame(entry)).Kind == FrameKind.Shmem || _memory.IsExclusiveAnonymous(Pte.Frame(entry));
    }

    private static bool Narrows(ulong before, ulong after) =>
        (Pte.IsPresent(before) && !Pte.IsPresent(after))
        || ((before & Pte.Writable) != 0 && (after & Pte.Writable) == 0)
        || ((before & Pte.NoExecute) == 0 && (after & Pte.NoExecute) != 0);
}
