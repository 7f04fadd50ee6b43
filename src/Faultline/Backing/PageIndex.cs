namespace Faultline.Backing;

/// <summary>
/// A page cache's index (the kernel's xarray as <c>address_space.i_pages</c>): page offset → frame number, a radix of
/// fixed fanout whose leaves hold frame numbers (0: none; frame 0 is the zero frame, never cached). Readers walk it
/// without a lock; writers change it under their owner's lock. The radix grows at the top when an offset beyond its
/// reach is inserted (the xarray's <c>xas_expand</c>).
/// </summary>
/// <remarks>
/// <para>Thread-safety: <see cref="Lookup"/> and <see cref="CollectRange"/> are lock-free and may run on the speculative
/// fault path; <see cref="TryInsert"/> and <see cref="RemoveRange"/> must be serialised by the owner (one writer at a
/// time). Nodes are never freed while reachable: removal clears entries only, and a replaced root stays the new root's
/// first child, so a reader holding an old root still walks valid memory (the collector reclaims dropped nodes).</para>
/// <para>The index holds numbers, not references: the owner keeps the frame reference rules (one reference per
/// indexed page) and a lock-free finder takes its own with <c>folio_try_get</c> and re-reads the entry.</para>
/// </remarks>
internal sealed class PageIndex
{
    private const int FanoutShift = 6;
    private const int Fanout = 1 << FanoutShift;
    private const int FanoutMask = Fanout - 1;

    // The root and its height, replaced together (an immutable pair) so a reader never pairs a root with another height.
    private sealed record Top(object Node, int Levels);

    private Top _top;
    private long _count;

    /// <summary>An empty index sized for <paramref name="pages"/> pages (it grows beyond when asked to).</summary>
    public PageIndex(ulong pages)
    {
        int levels = 1;
        while (levels * FanoutShift < 64 && pages > 0 && (pages - 1) >> (levels * FanoutShift) != 0)
        {
            levels++;
        }
        _top = new Top(levels == 1 ? new int[Fanout] : new object?[Fanout], levels);
    }

    /// <summary>Entries present now (a snapshot).</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>
    /// The frame at <paramref name="pageOffset"/>, or 0 when none. Lock-free: every node pointer and the leaf entry are
    /// read with acquire, pairing with <see cref="TryInsert"/>'s release stores (a reader sees a complete node and a
    /// frame whose metadata the inserter set before it) and <see cref="RemoveRange"/>'s exchanges.
    /// </summary>
    public int Lookup(ulong pageOffset)
    {
        // Acquire: pairs with the release store of a grown root in Grow.
        Top top = Volatile.Read(ref _top);
        if (top.Levels * FanoutShift < 64 && pageOffset >> (top.Levels * FanoutShift) != 0)
        {
            return 0;
        }
        object? node = top.Node;
        for (int level = top.Levels - 1; level > 0; level--)
        {
            // Acquire: pairs with Insert's release store of a new interior node, so the node is seen complete.
            node = Volatile.Read(ref ((object?[])node)[(int)(pageOffset >> (level * FanoutShift)) & FanoutMask]);
            if (node is null)
            {
                return 0;
            }
        }
        // Acquire: pairs with Insert's release store of the frame, published after the caller prepared the page.
        return Volatile.Read(ref ((int[])node)[(int)pageOffset & FanoutMask]);
    }

    /// <summary>
    /// Under the owner's lock: publishes <paramref name="frame"/> at <paramref name="pageOffset"/> unless an entry is
    /// there (false). The frame's contents and metadata must be set before the call: the entry is a release store.
    /// </summary>
    public bool TryInsert(ulong pageOffset, int frame)
    {
        Top top = _top;
        while (top.Levels * FanoutShift < 64 && pageOffset >> (top.Levels * FanoutShift) != 0)
        {
            top = Grow(top);
        }
        object node = top.Node;
        for (int level = top.Levels - 1; level > 0; level--)
        {
            object?[] interior = (object?[])node;
            int index = (int)(pageOffset >> (level * FanoutShift)) & FanoutMask;
            object? child = interior[index];
            if (child is null)
            {
                child = level == 1 ? new int[Fanout] : new object?[Fanout];
                // Release store: the new (zeroed) node is complete before a lock-free reader can reach it.
                Volatile.Write(ref interior[index], child);
            }
            node = child;
        }
        int[] leaf = (int[])node;
        int slot = (int)pageOffset & FanoutMask;
        if (leaf[slot] != 0)
        {
            return false;
        }
        // Release store: the frame's contents and metadata are visible before a lock-free lookup finds it; pairs with
        // the acquire reads of Lookup.
        Volatile.Write(ref leaf[slot], frame);
        Interlocked.Increment(ref _count);
        return true;
    }

    /// <summary>
    /// Under the owner's lock: clears every entry in [<paramref name="first"/>, <paramref name="end"/>), adding the
    /// frames to <paramref name="removed"/>. Each entry goes with a full fence, so the removal is visible before the
    /// caller reads any page-table entry to zap (a fault orders its install before its re-check with the PTE lock).
    /// </summary>
    public void RemoveRange(ulong first, ulong end, List<int> removed)
    {
        Top top = _top;
        int before = removed.Count;
        RemoveUnder(top.Node, top.Levels - 1, 0, first, end, removed);
        Interlocked.Add(ref _count, before - removed.Count);
    }

    /// <summary>
    /// Lock-free: the entries in [<paramref name="first"/>, <paramref name="end"/>) present when each was read, as
    /// (page offset, frame) in offset order. A snapshot: the caller re-checks an entry (with a reference) before use.
    /// </summary>
    public void CollectRange(ulong first, ulong end, List<(ulong PageOffset, int Frame)> found)
    {
        // Acquire: pairs with Grow's release store.
        Top top = Volatile.Read(ref _top);
        Collect(top.Node, top.Levels - 1, 0, first, end, found);
    }

    // Under the owner's lock: one level more, the old root becoming the new root's first child.
    private Top Grow(Top top)
    {
        var root = new object?[Fanout];
        root[0] = top.Node;
        var grown = new Top(root, top.Levels + 1);
        // Release store: the new root (holding the old) is complete before a lock-free reader picks it up.
        Volatile.Write(ref _top, grown);
        return grown;
    }

    private static void RemoveUnder(object node, int level, ulong nodeBase, ulong first, ulong end, List<int> removed)
    {
        ulong span = 1UL << (level * FanoutShift);
        for (int index = 0; index < Fanout; index++)
        {
            ulong childBase = nodeBase + ((ulong)index * span);
            if (childBase >= end || childBase + span <= first)
            {
                continue;
            }
            if (level == 0)
            {
                // Full fence (see the public overload).
                int frame = Interlocked.Exchange(ref ((int[])node)[index], 0);
                if (frame != 0)
                {
                    removed.Add(frame);
                }
            }
            else if (((object?[])node)[index] is { } child)
            {
                RemoveUnder(child, level - 1, childBase, first, end, removed);
            }
        }
    }

    private static void Collect(object node, int level, ulong nodeBase, ulong first, ulong end, List<(ulong, int)> found)
    {
        ulong span = 1UL << (level * FanoutShift);
        for (int index = 0; index < Fanout; index++)
        {
            ulong childBase = nodeBase + ((ulong)index * span);
            if (childBase >= end || childBase + span <= first)
            {
                continue;
            }
            if (level == 0)
            {
                // Acquire: pairs with TryInsert's release store.
                int frame = Volatile.Read(ref ((int[])node)[index]);
                if (frame != 0)
                {
                    found.Add((childBase, frame));
                }
            }
            else if (Volatile.Read(ref ((object?[])node)[index]) is { } child)
            {
                Collect(child, level - 1, childBase, first, end, found);
            }
        }
    }
}
