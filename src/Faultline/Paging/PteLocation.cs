namespace Faultline.Paging;

/// <summary>
/// Where a walk ended: the PMD slot that points to the PTE table (with the value read, the fault's
/// <c>orig_pmd</c>) and the PTE slot within that table.
/// </summary>
internal struct PteLocation
{
    /// <summary>Frame of the PMD table holding the slot.</summary>
    public long PmdTable;
    /// <summary>Index of the slot in the PMD table.</summary>
    public int PmdIndex;
    /// <summary>The PMD entry as read (<c>orig_pmd</c>).</summary>
    public ulong PmdEntry;
    /// <summary>Frame of the PTE table (0 when the PMD was empty).</summary>
    public long PteTable;
    /// <summary>Index of the PTE in its table.</summary>
    public int PteIndex;
}
