namespace Faultline.Paging;

/// <summary>
/// One slot of a <see cref="HugeTlb"/>: the 2 MiB virtual block it translates and the huge PMD a walk found for it.
/// </summary>
internal struct HugeTlbEntry
{
    /// <summary>The block number (virtual address >> 21) plus one; 0 means no translation.</summary>
    public ulong Tag;

    /// <summary>The huge PMD as the walk left it (with the accessed and dirty bits its fill set).</summary>
    public ulong Pmd;
}
