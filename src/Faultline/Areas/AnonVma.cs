namespace Faultline.Areas;

/// <summary>
/// The reverse-mapping anchor of anonymous pages (the kernel's <c>anon_vma</c>). A VMA gets one on its first
/// anonymous fault (<c>anon_vma_prepare</c>), reusing a compatible neighbour's when it can
/// (<c>find_mergeable_anon_vma</c>); two anonymous VMAs merge only when their anon_vmas are compatible.
/// Today it carries identity only; reverse mapping (swap, fork) will hang off it.
/// </summary>
internal sealed class AnonVma
{
    private static long s_nextId;

    /// <summary>A stable identity for diagnostics.</summary>
    public long Id { get; } = Interlocked.Increment(ref s_nextId);
}
