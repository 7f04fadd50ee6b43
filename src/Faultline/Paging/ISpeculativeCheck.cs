namespace Faultline.Paging;

/// <summary>
/// The speculative fault's validation (<c>vma_has_changed</c>), passed down to page-table code that must re-check
/// it under a lock. A struct implementation keeps the call free of allocation and virtual dispatch.
/// </summary>
internal interface ISpeculativeCheck
{
    /// <summary>True when the VMA was detached or its sequence moved since the fault began.</summary>
    bool HasChanged();
}
