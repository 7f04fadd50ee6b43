namespace Faultline.Areas;

/// <summary>A VMA's NUMA memory policy (<c>vma->vm_policy</c>); interleave makes a speculative fault bail out.</summary>
internal enum MemoryPolicy
{
    /// <summary>The default local policy.</summary>
    Default,
    /// <summary><c>MPOL_INTERLEAVE</c>.</summary>
    Interleave,
}
