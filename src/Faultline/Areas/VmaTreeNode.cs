namespace Faultline.Areas;

/// <summary>
/// An immutable node of <see cref="VmaTree"/>. It records the VMA's range as it was when the node was made (the key
/// readers search by) and, for its subtree, the lowest start, highest end, largest gap between neighbouring VMAs,
/// and size: everything a top-down gap search needs, computed from the children only, so path copying keeps it
/// exact.
/// </summary>
internal sealed class VmaTreeNode
{
    /// <summary>Builds a node and its subtree summary.</summary>
    public VmaTreeNode(Vma vma, ulong start, ulong end, VmaTreeNode? left, VmaTreeNode? right)
    {
        Vma = vma;
        Start = start;
        End = end;
        Left = left;
        Right = right;
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

    /// <summary>The VMA.</summary>
    public Vma Vma { get; }
    /// <summary>Start when inserted (the key).</summary>
    public ulong Start { get; }
    /// <summary>End when inserted.</summary>
    public ulong End { get; }
    /// <summary>Lower VMAs.</summary>
    public VmaTreeNode? Left { get; }
    /// <summary>Higher VMAs.</summary>
    public VmaTreeNode? Right { get; }
    /// <summary>AVL height.</summary>
    public int Height { get; }
    /// <summary>Nodes in the subtree.</summary>
    public int Count { get; }
    /// <summary>Lowest start in the subtree.</summary>
    public ulong MinStart { get; }
    /// <summary>Highest end in the subtree.</summary>
    public ulong MaxEnd { get; }
    /// <summary>Largest gap between consecutive VMAs inside the subtree.</summary>
    public ulong MaxGap { get; }

    /// <summary>Height of a possibly empty subtree.</summary>
    public static int HeightOf(VmaTreeNode? node) => node?.Height ?? 0;
}
