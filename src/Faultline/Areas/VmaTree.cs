using Faultline.Concurrency;

namespace Faultline.Areas;

/// <summary>
/// The ordered index of an address space's VMAs (the kernel's maple tree <c>mm_mt</c>): a persistent AVL tree.
/// Writers (holding the mmap lock for write) build a new version by path copying; <see cref="Publish"/> makes it
/// visible with one release store, so lock-free readers (speculative and per-VMA-lock faults) walking
/// <see cref="Published"/> see either the old or the new version whole, never a half-rotated tree.
/// </summary>
/// <remarks>
/// Node reuse (the maple tree frees its nodes with <c>call_rcu</c>): a node of the unpublished version is rewritten in
/// place; a published node that a write replaces or removes is retired and reused only after the walk epoch moved
/// twice (<see cref="RcuRecycler{T}"/>), so a lockless reader must walk inside a walk section
/// (<see cref="RcuReader.EnterWalk"/>) or hold the mmap lock. In steady state an edit allocates nothing.
/// </remarks>
internal sealed class VmaTree
{
    private readonly RcuDomain _rcu;
    private readonly MmapLock _mmapLock;
    private readonly RcuRecycler<VmaTreeNode> _nodes;
    private VmaTreeNode? _working;   // the writer's version
    private VmaTreeNode? _published; // the readers' version
    private int _publishedCount;
    // Bumped by each Publish: a node whose Version equals it was never published and is the writer's alone.
    private long _version;
    // mm_lock_seq of the write section that last advanced the walk epoch: at most one advance a section, so nothing
    // retired in a section is reused before the section ends (editors still read VMAs they detached in it).
    private long _advancedInSection = -1;

    /// <summary>An empty tree whose nodes are recycled over <paramref name="rcu"/>'s walk epoch, edited under <paramref name="mmapLock"/>.</summary>
    public VmaTree(RcuDomain rcu, MmapLock mmapLock)
    {
        _rcu = rcu;
        _mmapLock = mmapLock;
        _nodes = new RcuRecycler<VmaTreeNode>(rcu);
    }

    /// <summary>VMAs in the writer's version (<c>map_count</c>).</summary>
    public int Count => _working?.Count ?? 0;

    /// <summary>
    /// VMAs in the readers' version, for lock-free callers (an acquire load paired with the release store in
    /// <see cref="Publish"/>); unlike the root's count it never reads a node that may be reused meanwhile.
    /// </summary>
    public int PublishedCount => Volatile.Read(ref _publishedCount);

    /// <summary>The readers' root: an acquire load, pairing with the release store in <see cref="Publish"/>.</summary>
    public VmaTreeNode? Published => Volatile.Read(ref _published);

    /// <summary>
    /// How many versions were published: it moves whenever the readers' version may differ. A plain write under the
    /// mmap write lock, read here without it; a caller that ordered itself after an edit (by a lock or a join) sees
    /// the edit's bump, and a concurrent one is ordered before the edit. Never torn (an aligned long).
    /// </summary>
    public long PublishedVersion => Volatile.Read(ref _version);

    /// <summary>The node recycler (tests).</summary>
    internal RcuRecycler<VmaTreeNode> Nodes => _nodes;

    /// <summary>
    /// Makes the writer's version visible to lock-free readers, then tries to advance the walk epoch so retired nodes
    /// and VMAs become reusable (never waiting for readers).
    /// </summary>
    public void Publish()
    {
        // Release: the nodes (written by plain stores) are complete before a reader can reach them.
        Volatile.Write(ref _published, _working);
        Volatile.Write(ref _publishedCount, Count);
        _version++;
        long section = _mmapLock.LockSequence;
        if (section != _advancedInSection && _rcu.TryAdvanceWalkEpoch())
        {
            _advancedInSection = section;
        }
    }

    /// <summary><c>find_vma</c> on the writer's version: the first VMA ending above <paramref name="address"/>.</summary>
    public Vma? FindFirstEndingAbove(ulong address) => FirstEndingAbove(_working, address)?.Vma;

    /// <summary>The VMA containing <paramref name="address"/> in the writer's version.</summary>
    public Vma? FindContaining(ulong address) => Containing(_working, address);

    /// <summary>
    /// <c>vma_lookup</c> under RCU: the VMA containing <paramref name="address"/> in the published version, or null.
    /// The caller is inside a walk section (<see cref="RcuReader.EnterWalk"/>) for as long as it uses the VMA without
    /// its lock, or holds the mmap lock. The VMA may be changing or detached; the caller validates (sequence or VMA lock).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public Vma? LookupLockless(ulong address) => Containing(Published, address);

    /// <summary>The VMA containing <paramref name="address"/> in a version.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vma? Containing(VmaTreeNode? node, ulong address)
    {
        while (node is not null)
        {
            if (address < node.Start)
            {
                node = node.Left;
            }
            else if (address >= node.End)
            {
                node = node.Right;
            }
            else
            {
                return node.Vma;
            }
        }
        return null;
    }

    private static VmaTreeNode? FirstEndingAbove(VmaTreeNode? node, ulong address)
    {
        VmaTreeNode? best = null;
        while (node is not null)
        {
            if (node.End > address)
            {
                best = node;
                node = node.Left;
            }
            else
            {
                node = node.Right;
            }
        }
        return best;
    }

    /// <summary>The last VMA starting below <paramref name="address"/> (<c>find_vma_prev</c>'s prev), writer's version.</summary>
    public Vma? FindLastStartingBelow(ulong address)
    {
        VmaTreeNode? node = _working, best = null;
        while (node is not null)
        {
            if (node.Start < address)
            {
                best = node;
                node = node.Right;
            }
            else
            {
                node = node.Left;
            }
        }
        return best?.Vma;
    }

    /// <summary>VMAs of the writer's version intersecting [start, end), in address order.</summary>
    public List<Vma> Intersecting(ulong start, ulong end)
    {
        var result = new List<Vma>();
        Intersecting(start, end, result);
        return result;
    }

    /// <summary>
    /// <see cref="Intersecting(ulong, ulong)"/> into <paramref name="result"/> (cleared first), so a caller that keeps a
    /// scratch list allocates nothing.
    /// </summary>
    public void Intersecting(ulong start, ulong end, List<Vma> result)
    {
        result.Clear();
        VmaTreeNode? node = FirstEndingAbove(_working, start);
        while (node is not null && node.Start < end)
        {
            result.Add(node.Vma);
            node = FirstEndingAbove(_working, node.End);
        }
    }

    /// <summary>All VMAs of a version in address order (diagnostics).</summary>
    public static List<Vma> InOrder(VmaTreeNode? root)
    {
        var result = new List<Vma>(root?.Count ?? 0);
        var stack = new Stack<VmaTreeNode>();
        VmaTreeNode? node = root;
        while (node is not null || stack.Count > 0)
        {
            while (node is not null)
            {
                stack.Push(node);
                node = node.Left;
            }
            node = stack.Pop();
            result.Add(node.Vma);
            node = node.Right;
        }
        return result;
    }

    /// <summary>All VMAs of the writer's version in address order.</summary>
    public List<Vma> All() => InOrder(_working);

    /// <summary>Inserts a VMA under its current range (which must not overlap another).</summary>
    public void Insert(Vma vma) => _working = Insert(_working, vma, vma.Start, vma.End);

    /// <summary>Removes the VMA whose node key is <paramref name="start"/>.</summary>
    public void Remove(ulong start)
    {
        _working = Remove(_working, start, out bool found);
        Debug.Assert(found, "remove of a VMA not in the tree");
    }

    /// <summary>
    /// Top-down search for the highest page-aligned address <c>a</c> with [a, a+<paramref name="length"/>) free and
    /// inside [<paramref name="low"/>, <paramref name="high"/>) (<c>unmapped_area_topdown</c>), or null.
    /// </summary>
    public ulong? FindGapTopDown(ulong length, ulong low, ulong high) => TopDown(_working, 0, ulong.MaxValue, length, low, high);

    /// <summary>Bottom-up search for the lowest such address (<c>unmapped_area</c>), or null.</summary>
    public ulong? FindGapBottomUp(ulong length, ulong low, ulong high) => BottomUp(_working, 0, ulong.MaxValue, length, low, high);

    // [before, after) is the address range the subtree occupies between its outside neighbours.
    private static ulong? TopDown(VmaTreeNode? node, ulong before, ulong after, ulong length, ulong low, ulong high)
    {
        if (after <= low || before >= high)
        {
            return null;
        }
        if (node is null)
        {
            ulong s = Math.Max(before, low), e = Math.Min(after, high);
            return e > s && e - s >= length ? e - length : null;
        }
        if (Math.Max(node.MaxGap, Math.Max(node.MinStart - before, after - node.MaxEnd)) < length)
        {
            return null;
        }
        return TopDown(node.Right, node.End, after, length, low, high)
            ?? TopDown(node.Left, before, node.Start, length, low, high);
    }

    private static ulong? BottomUp(VmaTreeNode? node, ulong before, ulong after, ulong length, ulong low, ulong high)
    {
        if (after <= low || before >= high)
        {
            return null;
        }
        if (node is null)
        {
            ulong s = Math.Max(before, low), e = Math.Min(after, high);
            return e > s && e - s >= length ? s : null;
        }
        if (Math.Max(node.MaxGap, Math.Max(node.MinStart - before, after - node.MaxEnd)) < length)
        {
            return null;
        }
        return BottomUp(node.Left, before, node.Start, length, low, high)
            ?? BottomUp(node.Right, node.End, after, length, low, high);
    }

    private VmaTreeNode Insert(VmaTreeNode? node, Vma vma, ulong start, ulong end)
    {
        if (node is null)
        {
            return NewNode(vma, start, end, null, null);
        }
        Debug.Assert(end <= node.Start || start >= node.End, "overlapping VMAs");
        return start < node.Start
            ? Balance(node, Insert(node.Left, vma, start, end), node.Right)
            : Balance(node, node.Left, Insert(node.Right, vma, start, end));
    }

    private VmaTreeNode? Remove(VmaTreeNode? node, ulong start, out bool found)
    {
        if (node is null)
        {
            found = false;
            return null;
        }
        if (start < node.Start)
        {
            VmaTreeNode? left = Remove(node.Left, start, out found);
            return found ? Balance(node, left, node.Right) : node;
        }
        if (start > node.Start)
        {
            VmaTreeNode? right = Remove(node.Right, start, out found);
            return found ? Balance(node, node.Left, right) : node;
        }
        found = true;
        VmaTreeNode? replacement;
        if (node.Left is null || node.Right is null)
        {
            replacement = node.Left ?? node.Right;
        }
        else
        {
            VmaTreeNode? rightWithout = RemoveMin(node.Right, out VmaTreeNode successor);
            replacement = Balance(successor, node.Left, rightWithout);
        }
        Drop(node);
        return replacement;
    }

    // Unlinks the lowest node of a non-empty subtree without dropping it: the caller reuses it as a template.
    private VmaTreeNode? RemoveMin(VmaTreeNode node, out VmaTreeNode min)
    {
        if (node.Left is null)
        {
            min = node;
            return node.Right;
        }
        VmaTreeNode? left = RemoveMin(node.Left, out min);
        return Balance(node, left, node.Right);
    }

    // Rebuilds `template` with new children and restores the AVL invariant with copying rotations. Arguments are
    // read before the node they come from is rebuilt (C# evaluates them left to right).
    private VmaTreeNode Balance(VmaTreeNode template, VmaTreeNode? left, VmaTreeNode? right)
    {
        int diff = VmaTreeNode.HeightOf(left) - VmaTreeNode.HeightOf(right);
        if (diff > 1)
        {
            Debug.Assert(left is not null);
            if (VmaTreeNode.HeightOf(left.Left) < VmaTreeNode.HeightOf(left.Right))
            {
                VmaTreeNode lr = left.Right!;
                return Make(lr, Make(left, left.Left, lr.Left), Make(template, lr.Right, right));
            }
            return Make(left, left.Left, Make(template, left.Right, right));
        }
        if (diff < -1)
        {
            Debug.Assert(right is not null);
            if (VmaTreeNode.HeightOf(right.Right) < VmaTreeNode.HeightOf(right.Left))
            {
                VmaTreeNode rl = right.Left!;
                return Make(rl, Make(template, left, rl.Left), Make(right, rl.Right, right.Right));
            }
            return Make(right, Make(template, left, right.Left), right.Right);
        }
        return Make(template, left, right);
    }

    // `template` with new children: rewritten in place while unpublished (no reader can reach it), else copied and
    // retired, since readers of a published version may still be walking it.
    private VmaTreeNode Make(VmaTreeNode template, VmaTreeNode? left, VmaTreeNode? right)
    {
        if (template.Version == _version)
        {
            template.Init(template.Vma, template.Start, template.End, left, right, _version);
            return template;
        }
        VmaTreeNode copy = NewNode(template.Vma, template.Start, template.End, left, right);
        _nodes.Retire(template);
        return copy;
    }

    private VmaTreeNode NewNode(Vma vma, ulong start, ulong end, VmaTreeNode? left, VmaTreeNode? right)
    {
        // Reuse pairs with the walk section of every reader that could have reached the node (RcuRecycler): none is
        // left, so the plain stores of Init race with no read; the next Publish's release store orders them.
        if (_nodes.TryTake(out VmaTreeNode? node))
        {
            node.Init(vma, start, end, left, right, _version);
            return node;
        }
        return new VmaTreeNode(vma, start, end, left, right, _version);
    }

    // A node leaving the writer's version: free at once if it was never published, else after the walk epoch moves.
    private void Drop(VmaTreeNode node)
    {
        if (node.Version == _version)
        {
            _nodes.Release(node);
        }
        else
        {
            _nodes.Retire(node);
        }
    }
}
