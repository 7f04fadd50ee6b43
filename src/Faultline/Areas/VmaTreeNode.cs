namespace Faultline.Areas;

/// <summary>
/// A node of <see cref="VmaTree"/>. It records the VMA's range as it was when the node was made (the key readers
/// search by) and, for its subtree, the lowest start, highest end, largest gap between neighbouring VMAs, and size:
/// everything a top-down gap search needs, computed from the children only, so path copying keeps it exact.
/// </summary>
/// <remarks>
/// Immutable while readers can reach it: the tree rewrites a node in place only while it belongs to the writer's
/// unpublished version (<see cref="Version"/>), and reuses a published one only after the walk epoch moved twice past
/// its retirement (<see cref="Concurrency.RcuRecycler{T}"/>). Plain fields: readers reach a node only through the
/// release store that publishes a version, or through a parent reached that way.
/// </remarks>
internal sealed class VmaTreeNode
{
    /// <summary>Builds a node and its subtree summary.</summary>
    public VmaTreeNode(Vma vma, ulong start, ulong end, VmaTreeNode? left, VmaTreeNode? right, long version)
    {
        Vma = vma;
        Init(vma, start, end, left, right, version);
    }

    /// <summary>The VMA.</summary>
    public Vma Vma { get; private set; }
    /// <summary>Start when inserted (the key).</summary>
    public ulong Start { get; private set; }
    /// <summary>End when inserted.</summary>
    public ulong End { get; private set; }
    /// <summary>Lower VMAs.</summary>
    public VmaTreeNode? Left { get; private set; }
    /// <summary>Higher VMAs.</summary>
    public VmaTreeNode? Right { get; private set; }
    /// <summary>AVL height.</summary>
    public int Height { get; private set; }
    /// <summary>Nodes in the subtree.</summary>
    public int Count { get; private set; }
    /// <summary>Lowest start in the subtree.</summary>
    public ulong MinStart { get; private set; }
    /// <summary>Highest end in the subtree.</summary>
    public ulong MaxEnd { get; private set; }
    /// <summary>Largest gap between consecutive VMAs inside the subtree.</summary>
    public ulong MaxGap { get; private set; }
    /// <summary>The tree version this node was (re)built for; equal to the tree's current one while unpublished.</summary>
    public long Version { get; private set; }

    /// <summary>
    /// Sets every field and the subtree summary: for a new node, for a reused one, or for an unpublished one rewritten
    /// in place. Only the writer calls it, on a node no reader can reach.
    /// </summary>
    public void Init(Vma vma, ulong start, ulong end, VmaTreeNode? left, VmaTreeNode? right, long version)
    {
        Vma = vma;
        Start = start;
        End = end;
        Left = left;
        Right = right;
        Version = version;
        Height = 1 + Math.Max(HeightOf(left), HeightOf(right));
        Count = 1 + (left?.Count ?? 0) + (right?.Count ?? 0);
        MinStart = left?.MinStart ?? start;
        MaxEnd = right?.MaxEnd ?? end;
        ulong gap = Math.Max(left?.MaxGap ?? 0, right?.MaxGap ?? 0);
        if (left is not null)
        {
            gap = Math.Max(gap, start - left.MaxEnd);
        }
        if (right is not null)
        {
            gap = Math.Max(gap, right.MinStart - end);
        }
        MaxGap = gap;
    }

    /// <summary>Height of a possibly empty subtree.</summary>
    public static int HeightOf(VmaTreeNode? node) => node?.Height ?? 0;
}
