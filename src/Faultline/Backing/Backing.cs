namespace Faultline.Backing;

/// <summary>
/// What backs a VMA (the kernel's <c>vm_ops</c> plus <c>vm_file</c>): how its pages are found on a fault, its name in
/// the maps, and whether a speculative fault may handle it without the mmap lock.
/// </summary>
internal abstract class Backing
{
    /// <summary>True for anonymous memory (<c>vma_is_anonymous</c>: no <c>vm_ops</c>).</summary>
    public abstract bool IsAnonymous { get; }

    /// <summary>
    /// True when a fault on this backing may run without the mmap lock (the SPF series' per-<c>vm_ops</c> opt-in).
    /// Only anonymous memory is today.
    /// </summary>
    public abstract bool IsSpeculativeSafe { get; }

    /// <summary>The name shown in the maps (empty for private anonymous memory).</summary>
    public abstract string MapsName { get; }
}
