namespace Faultline.Areas;

/// <summary>
/// The reverse-mapping anchor of anonymous pages (the kernel's <c>anon_vma</c>). A VMA gets one on its first
/// anonymous fault (<c>anon_vma_prepare</c>), reusing a compatible neighbour's when it can
/// (<c>find_mergeable_anon_vma</c>); two anonymous VMAs merge only when their anon_vmas are compatible. A forked
/// child's VMA gets a new anon_vma whose <see cref="Parent"/> is the parent VMA's (<c>anon_vma_fork</c>).
/// </summary>
/// <remarks>
/// <para>
/// The chain (<c>anon_vma_chain</c>): a VMA is linked into its own anon_vma and into every ancestor's, because the
/// pages it maps may have been faulted in by any ancestor before a fork (their <c>page->mapping</c> names the
/// ancestor's anon_vma). So the VMAs linked into one anon_vma are every VMA that may map one of its pages: the
/// reverse map of a page walks exactly those (<c>rmap_walk_anon</c>).
/// </para>
/// <para>
/// Locking: the links of a whole family (every anon_vma that shares a <see cref="Root"/>) change and are walked under
/// the root's lock (the kernel's <c>anon_vma->root->rwsem</c>). Lock order: the mmap lock, then this lock, then PTE
/// locks and <c>page_table_lock</c>.
/// </para>
/// </remarks>
internal sealed class AnonVma
{
    private static long s_nextId;

    private readonly object _familyLock = new();
    private readonly Dictionary<Vma, object> _links = [];

    /// <summary>A new anon_vma: the root of a family, or a forked child's in its parent's family.</summary>
    public AnonVma(AnonVma? parent = null)
    {
        Parent = parent;
        Root = parent?.Root ?? this;
    }

    /// <summary>A stable identity for diagnostics.</summary>
    public long Id { get; } = Interlocked.Increment(ref s_nextId);

    /// <summary><c>anon_vma->parent</c>: the anon_vma of the VMA this one's VMA was forked from.</summary>
    public AnonVma? Parent { get; }

    /// <summary><c>anon_vma->root</c>: the oldest ancestor; its lock guards the links of the whole family.</summary>
    public AnonVma Root { get; }

    /// <summary>Takes the family's lock (<c>anon_vma_lock_write</c>/<c>anon_vma_lock_read</c>: one mutex here).</summary>
    public void EnterFamilyLock() => Monitor.Enter(Root._familyLock);

    /// <summary>Releases the family's lock.</summary>
    public void ExitFamilyLock() => Monitor.Exit(Root._familyLock);

    /// <summary>
    /// <c>anon_vma_chain_link</c> for <paramref name="vma"/> (whose anon_vma is this one) into this anon_vma and every
    /// ancestor. <paramref name="owner"/> is the address space whose tree holds the VMA (typed object: this layer sits
    /// below the one that defines address spaces). Takes the family's lock.
    /// </summary>
    public void Link(Vma vma, object owner)
    {
        EnterFamilyLock();
        LinkUnderLock(vma, owner);
        ExitFamilyLock();
    }

    /// <summary><see cref="Link"/> with the family's lock already held.</summary>
    public void LinkUnderLock(Vma vma, object owner)
    {
        Debug.Assert(Monitor.IsEntered(Root._familyLock), "the family lock is held");
        for (AnonVma? a = this; a is not null; a = a.Parent)
        {
            a._links[vma] = owner;
        }
    }

    /// <summary><c>unlink_anon_vmas</c>: the reverse of <see cref="Link"/>. Takes the family's lock.</summary>
    public void Unlink(Vma vma)
    {
        EnterFamilyLock();
        for (AnonVma? a = this; a is not null; a = a.Parent)
        {
            a._links.Remove(vma);
        }
        ExitFamilyLock();
    }

    /// <summary>
    /// The VMAs that may map a page of this anon_vma, with the address space owning each. The caller holds the
    /// family's lock (<see cref="EnterFamilyLock"/>) for as long as it uses them.
    /// </summary>
    public IEnumerable<KeyValuePair<Vma, object>> LinkedUnderLock()
    {
        Debug.Assert(Monitor.IsEntered(Root._familyLock), "the family lock is held");
        return _links;
    }

    /// <summary>VMAs linked here (tests, assertions). Takes the family's lock.</summary>
    public int LinkCount
    {
        get
        {
            EnterFamilyLock();
            int count = _links.Count;
            ExitFamilyLock();
            return count;
        }
    }
}
