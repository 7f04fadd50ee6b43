namespace Faultline.Areas;

/// <summary>
/// When two adjacent VMAs may become one (<c>is_mergeable_vma</c>, <c>is_mergeable_anon_vma</c>) and when a VMA may
/// share a neighbour's anon_vma (<c>anon_vma_compatible</c>).
/// </summary>
internal static class VmaMergeRules
{
    /// <summary>
    /// True when <paramref name="left"/> (ending where <paramref name="right"/> starts) can merge with it: same flags
    /// but for <c>VM_SOFTDIRTY</c> (which the merged VMA keeps if either had it: <see cref="MergedFlags"/>), none of
    /// them <c>VM_SPECIAL</c> (<c>vma_merge_new_range</c> never merges those), backing, policy and user-fault channel
    /// (<c>is_mergeable_vm_userfaultfd_ctx</c>), continuous page offsets, and anon_vmas that are equal or not both set.
    /// </summary>
    public static bool CanMerge(Vma left, Vma right) =>
        left.End == right.Start
        && ((left.Flags ^ right.Flags) & ~VmFlags.SoftDirty) == 0
        && (left.Flags & VmFlags.SpecialMask) == 0
        && ReferenceEquals(left.Backing, right.Backing)
        && left.Policy == right.Policy
        && ReferenceEquals(left.UserFault, right.UserFault)
        && OffsetsContinue(left, right)
        && AnonVmasCompatible(left.AnonVma, right.AnonVma);

    /// <summary>
    /// <c>is_mergeable_anon_vma</c>: both the same, or one unset while the other VMA's anon_vma chain is singular. A
    /// chain is singular unless the anon_vma was forked from another (<see cref="AnonVma.Parent"/>): a VMA inherited
    /// through fork may map its ancestors' pages, which a merged VMA without those links could not reach
    /// (<c>vma_had_uncowed_parents</c>).
    /// </summary>
    public static bool AnonVmasCompatible(AnonVma? a, AnonVma? b) =>
        a is null ? b is null || b.Parent is null
        : b is null ? a.Parent is null
        : ReferenceEquals(a, b);

    /// <summary>
    /// <c>anon_vma_compatible</c>: <paramref name="b"/> may reuse <paramref name="a"/>'s anon_vma (or the reverse)
    /// because they could merge after an mprotect: adjacent, same backing and policy, flags differing only in access
    /// bits and <c>VM_SOFTDIRTY</c>, continuous offsets.
    /// </summary>
    public static bool AnonVmaCompatible(Vma a, Vma b) =>
        a.End == b.Start
        && ReferenceEquals(a.Backing, b.Backing)
        && a.Policy == b.Policy
        && ((a.Flags ^ b.Flags) & ~(VmFlags.AccessFlags | VmFlags.SoftDirty)) == 0
        && OffsetsContinue(a, b);

    /// <summary>
    /// The flags of two VMAs merged into one: <c>VM_SOFTDIRTY</c> is sticky (a merge must not make a page that read
    /// soft-dirty read clean), the rest are equal.
    /// </summary>
    public static VmFlags MergedFlags(Vma left, Vma right) => left.Flags | (right.Flags & VmFlags.SoftDirty);

    private static bool OffsetsContinue(Vma left, Vma right) =>
        right.PageOffset == left.PageOffset + ((right.Start - left.Start) >> PageGeometry.PageShift);
}
