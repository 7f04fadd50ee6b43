using Faultline.Areas;
using Faultline.Backing;

namespace Faultline.Mm;

/// <summary>
/// VMA editing for one address space (the kernel's <c>mm/vma.c</c>): attach, detach, split, merge, and the write
/// sections that make each edit visible to lockless readers. Used only with the mmap lock held for write.
/// </summary>
/// <remarks>
/// Before changing or removing a VMA the editor write-locks it for per-VMA-lock readers (<c>vma_start_write</c>) and
/// opens its SPF sequence write section; a VMA whose range or flags change is replaced by a new one (the old one is
/// detached), so a reader that found the old one either fails its lock or sees the sequence move. The caller
/// publishes the tree, then calls <see cref="EndWriteSections"/>; the VMA write locks end with the mmap write section.
/// </remarks>
internal sealed class VmaEditor
{
    private readonly MemoryDescriptor _mm;
    private readonly List<Vma> _openSequences = [];
    // Scratch for the VMAs an edit visits, reused so an edit allocates nothing; guarded by the mmap write lock, which
    // every method here requires. No method using it calls another that does.
    private readonly List<Vma> _scratch = [];

    /// <summary>The editor of <paramref name="mm"/>.</summary>
    public VmaEditor(MemoryDescriptor mm) => _mm = mm;

    /// <summary>
    /// <c>vma_start_write</c> and <c>write_seqcount_begin</c>: readers of either protocol now see the VMA as changing.
    /// Idempotent within one mmap write section, in constant time.
    /// </summary>
    public void BeginWrite(Vma vma)
    {
        // StartWrite returns at once when vm_lock_seq already equals mm_lock_seq (write-locked in this section); an
        // open sequence is one this writer opened, since only mmap-lock writers open them and close all before leaving.
        vma.StartWrite();
        if (vma.Sequence.IsWriting)
        {
            return;
        }
        vma.Sequence.BeginWrite();
        _openSequences.Add(vma);
        // get_file for the edit: the VMA may be detached before its pieces are attached.
        (vma.Backing as IPageCacheBacking)?.Hold();
    }

    /// <summary>
    /// <c>write_seqcount_end</c> for every VMA this write section changed, after the tree was published; the VMA
    /// write locks end with the mmap write section.
    /// </summary>
    public void EndWriteSections()
    {
        foreach (Vma vma in _openSequences)
        {
            vma.Sequence.EndWrite();
            (vma.Backing as IPageCacheBacking)?.Unhold();
        }
        _openSequences.Clear();
    }

    /// <summary>
    /// Inserts a new VMA (<c>vma_iter_store</c>; where a backing is told a VMA was opened). Attached before insertion
    /// so a reader that finds it can lock it (<c>vma_mark_attached</c>), and write-locked for the rest of this write
    /// section, like the kernel's <c>vma_start_write(new)</c>.
    /// </summary>
    public void Attach(Vma vma)
    {
        vma.StartWrite();
        vma.MarkAttached();
        _mm.Tree.Insert(vma);
        // anon_vma_chain_link: the reverse map finds the VMA from then on (a copy or merge inherits the anon_vma).
        vma.AnonVma?.Link(vma, _mm);
        // Every VMA that enters the tree opens its backing (vm_ops->open) and every one that leaves closes it
        // (vm_ops->close), so a backing sees as many opens as closes over the life of its mappings.
        vma.Backing.Opened(vma.PageOffset, vma.Length >> PageGeometry.PageShift);
        // vma_link_file: a page-cache backing's reverse map finds the VMA (a hole punch zaps it) and holds the object.
        (vma.Backing as IPageCacheBacking)?.Link(vma, _mm.Zapper, vma.PageOffset, vma.Length >> PageGeometry.PageShift);
    }

    /// <summary>
    /// Removes a write-locked VMA from the tree and marks it detached (where a backing is told it closed), then retires
    /// it for reuse once no lockless reader can hold it; the caller may go on reading it during this write section.
    /// </summary>
    public void Detach(Vma vma)
    {
        _mm.Tree.Remove(vma.Start);
        // unlink_anon_vmas, before the tables under the VMA can be freed: a reverse-map walk holding the family's
        // lock only visits VMAs whose tables are still there.
        vma.AnonVma?.Unlink(vma);
        vma.MarkDetached();
        vma.Backing.Closed(vma.PageOffset, vma.Length >> PageGeometry.PageShift);
        // unlink_file_vma, before the tables under the VMA can be freed (as for the anon_vma above).
        (vma.Backing as IPageCacheBacking)?.Unlink(vma);
        _mm.RetireVma(vma);
    }

    /// <summary>
    /// <c>vm_ops->may_split</c> for every VMA an edit of [start, end) splits (one straddling either edge), asked before
    /// anything changes so that a refusal leaves the address space as it was.
    /// </summary>
    public bool EdgesMaySplit(ulong start, ulong end)
    {
        _mm.Tree.Intersecting(start, end, _scratch);
        foreach (Vma vma in _scratch)
        {
            if ((vma.Start < start && !MaySplitAt(vma, start)) || (vma.End > end && !MaySplitAt(vma, end)))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary><c>vm_ops->may_split</c>: whether the backing lets <paramref name="vma"/> be split at <paramref name="address"/>.</summary>
    public static bool MaySplitAt(Vma vma, ulong address) =>
        vma.Backing.MaySplit(vma.PageOffset, vma.Length >> PageGeometry.PageShift, vma.PageOffset + ((address - vma.Start) >> PageGeometry.PageShift));

    /// <summary>
    /// <c>vm_area_dup</c> narrowed to [<paramref name="start"/>, <paramref name="end"/>) with <paramref name="flags"/>:
    /// same backing, policy, anon_vma and user-fault channel, page offset moved with the start (where a backing is told
    /// of a copy).
    /// </summary>
    public Vma CopyOf(Vma source, ulong start, ulong end, VmFlags flags)
    {
        Vma copy = _mm.CreateVma(start, end, source.PageOffset + ((start - source.Start) >> PageGeometry.PageShift), flags, source.Backing, source.Policy);
        copy.AnonVma = source.AnonVma;
        // vm_area_dup copies vm_userfaultfd_ctx; a copy without VM_UFFD_* flags is registered with no channel.
        copy.UserFault = (flags & VmFlags.UserfaultFlags) != 0 ? source.UserFault : null;
        return copy;
    }

    /// <summary>
    /// <c>vms_gather_munmap_vmas</c>: write-locks and detaches every VMA intersecting [start, end), re-attaching the
    /// parts of the edge VMAs that lie outside it.
    /// </summary>
    public void DetachRange(ulong start, ulong end)
    {
        _mm.Tree.Intersecting(start, end, _scratch);
        foreach (Vma vma in _scratch)
        {
            BeginWrite(vma);
            Detach(vma);
            SplitOutside(vma, start, end);
        }
    }

    /// <summary>
    /// <c>vma_modify_flags</c> without the merge: replaces <paramref name="vma"/> by its parts outside
    /// [start, end) with the old flags and the part inside with <paramref name="flags"/>.
    /// </summary>
    public void ReplaceFlags(Vma vma, ulong start, ulong end, VmFlags flags)
    {
        BeginWrite(vma);
        Detach(vma);
        SplitOutside(vma, start, end);
        Attach(CopyOf(vma, Math.Max(start, vma.Start), Math.Min(end, vma.End), flags));
    }

    /// <summary>
    /// <c>vma_modify_flags_uffd</c> without the merge: as <see cref="ReplaceFlags"/>, the part inside [start, end)
    /// registered with <paramref name="userFault"/> (null: with none).
    /// </summary>
    public void ReplaceUserFault(Vma vma, ulong start, ulong end, VmFlags flags, UserFaultContext? userFault)
    {
        BeginWrite(vma);
        Detach(vma);
        SplitOutside(vma, start, end);
        Vma piece = CopyOf(vma, Math.Max(start, vma.Start), Math.Min(end, vma.End), flags);
        piece.UserFault = userFault;
        Attach(piece);
    }

    /// <summary>
    /// <c>vma_merge_new_range</c> in <c>just_expand</c> mode (brk): replaces <paramref name="vma"/> by a copy ending at
    /// <paramref name="newEnd"/>, with the same flags (plus <paramref name="added"/>: brk's <c>VM_SOFTDIRTY</c>), page
    /// offset and anon_vma.
    /// </summary>
    public void Expand(Vma vma, ulong newEnd, VmFlags added = VmFlags.None)
    {
        BeginWrite(vma);
        Detach(vma);
        Attach(CopyOf(vma, vma.Start, newEnd, vma.Flags | added));
    }

    /// <summary>
    /// The edit of <c>expand_downwards</c>: replaces <paramref name="vma"/> by a copy starting at the lower
    /// <paramref name="newStart"/> with <c>vm_pgoff</c> lowered by the pages gained, so every page already mapped keeps
    /// its offset; same flags, backing, policy and anon_vma, and no merge with the VMA below (the kernel moves
    /// <c>vm_start</c> in place). Returns the copy.
    /// </summary>
    public Vma ExpandDown(Vma vma, ulong newStart)
    {
        ulong grow = (vma.Start - newStart) >> PageGeometry.PageShift;
        BeginWrite(vma);
        Detach(vma);
        Vma grown = _mm.CreateVma(newStart, vma.End, vma.PageOffset - grow, vma.Flags, vma.Backing, vma.Policy);
        grown.AnonVma = vma.AnonVma;
        grown.UserFault = vma.UserFault;
        BeginWrite(grown);
        Attach(grown);
        return grown;
    }

    /// <summary>
    /// <c>vma_merge_new_range</c>: write-locks and inserts a new VMA, then merges it with compatible neighbours.
    /// </summary>
    public void InsertAndMerge(Vma created)
    {
        BeginWrite(created);
        Attach(created);
        MergeWindow(created.Start, created.End);
    }

    /// <summary>
    /// The merges of <c>vma_modify</c>: walks the VMAs from the one ending at <paramref name="start"/> to the one
    /// starting at <paramref name="end"/>, joining each compatible adjacent pair left to right (so a piece joins its
    /// left neighbour first, and a three-way join happens only if the outer two are compatible, as
    /// <c>are_anon_vmas_compatible</c> asks).
    /// </summary>
    public void MergeWindow(ulong start, ulong end)
    {
        List<Vma> window = _scratch;
        _mm.Tree.Intersecting(start == 0 ? 0 : start - 1, end + 1, window);
        if (window.Count == 0)
        {
            return;
        }
        Vma current = window[0];
        for (int i = 1; i < window.Count; i++)
        {
            current = VmaMergeRules.CanMerge(current, window[i]) ? Join(current, window[i]) : window[i];
        }
    }

    // __split_vma for a detached VMA: the parts before `start` and after `end` go back into the tree with the old
    // flags (where a backing is asked whether it may split).
    private void SplitOutside(Vma vma, ulong start, ulong end)
    {
        // vma_adjust_trans_huge: a huge PMD across a new VMA boundary is split first (the VMA is write-locked).
        if (vma.Start < start && (start & (PageGeometry.PmdSize - 1)) != 0)
        {
            _mm.PageTable.SplitHugePmd(start);
        }
        if (vma.End > end && (end & (PageGeometry.PmdSize - 1)) != 0)
        {
            _mm.PageTable.SplitHugePmd(end);
        }
        if (vma.Start < start)
        {
            Attach(CopyOf(vma, vma.Start, start, vma.Flags));
        }
        if (vma.End > end)
        {
            Attach(CopyOf(vma, end, vma.End, vma.Flags));
        }
    }

    // commit_merge: two adjacent VMAs become one carrying either's anon_vma.
    private Vma Join(Vma left, Vma right)
    {
        BeginWrite(left);
        BeginWrite(right);
        Detach(left);
        Detach(right);
        Vma joined = CopyOf(left, left.Start, right.End, VmaMergeRules.MergedFlags(left, right));
        joined.AnonVma = left.AnonVma ?? right.AnonVma;
        Attach(joined);
        return joined;
    }
}
