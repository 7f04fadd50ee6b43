using Faultline.Areas;

namespace Faultline.Mm;

/// <summary>
/// Whether a fault may map a 2 MiB page (the kernel's <c>thp_vma_allowable_order</c> with <c>TVA_IN_PF</c> and
/// <c>TVA_ENFORCE_SYSFS</c> for the PMD order, plus <c>thp_vma_suitable_order</c>). The one place the huge fault
/// and khugepaged ask (MADV_COLLAPSE ignores the mode, as madvise_collapse does).
/// </summary>
/// <remarks>
/// The rules: the mapping is private anonymous (shared anonymous memory is shmem, governed by <c>shmem_enabled</c>, and
/// file mappings need large page-cache folios); it is not <see cref="VmFlags.SpecialMask"/> (<c>VM_NO_KHUGEPAGED</c>);
/// <see cref="VmFlags.NoHugePage"/> forbids it (<c>vma_thp_disabled</c>); the mode is <c>always</c>, or
/// <c>madvise</c> with <see cref="VmFlags.HugePage"/>; and the 2 MiB-aligned block around the address lies inside the
/// mapping. Not decided here, as in the kernel: a userfaultfd-armed mapping's missing fault goes to its handler from
/// the huge fault itself (<c>do_huge_pmd_anonymous_page</c>). Stateless and thread-safe; the caller reads the flags under
/// whatever keeps the mapping stable (the mmap lock, the VMA lock, or a speculative snapshot it validates later).
/// </remarks>
internal static class ThpPolicy
{
    /// <summary>May a fault at <paramref name="address"/> in <paramref name="vma"/> map a 2 MiB page?</summary>
    public static bool MayUseHugePage(Vma vma, in MmSettings settings, ulong address) =>
        MayUseHugePage(vma.Flags, vma.Backing.IsAnonymous, vma.Start, vma.End, settings.TransparentHugePages, address);

    /// <summary>
    /// smaps' <c>THPeligible</c>: <c>thp_vma_allowable_orders</c> with <c>TVA_SMAPS | TVA_ENFORCE_SYSFS</c> for the PMD
    /// order. The fault's rules for the mapping as a whole: eligible under <paramref name="mode"/> and its advice, and
    /// large enough that its last aligned 2 MiB block (<c>vm_end - HPAGE_PMD_SIZE</c>, rounded down) lies inside it.
    /// Unlike the fault and khugepaged, smaps does not exclude <c>VM_NO_KHUGEPAGED</c> mappings, and an anonymous
    /// mapping not yet faulted (no <c>anon_vma</c>) counts.
    /// </summary>
    public static bool IsSmapsEligible(Vma vma, TransparentHugePageMode mode) =>
        MayUseHugePage(vma.Flags & ~VmFlags.SpecialMask, vma.Backing.IsAnonymous, vma.Start, vma.End, mode,
            vma.End - PageGeometry.PmdSize);

    /// <summary>
    /// The same rules on plain values: a mapping of <paramref name="flags"/> over [<paramref name="start"/>,
    /// <paramref name="end"/>), anonymous or not, under <paramref name="mode"/>.
    /// </summary>
    public static bool MayUseHugePage(VmFlags flags, bool anonymous, ulong start, ulong end, TransparentHugePageMode mode,
        ulong address)
    {
        if (!anonymous || (flags & (VmFlags.Shared | VmFlags.SpecialMask | VmFlags.NoHugePage)) != 0)
        {
            return false;
        }
        bool allowed = mode switch
        {
            TransparentHugePageMode.Always => true,
            TransparentHugePageMode.Madvise => (flags & VmFlags.HugePage) != 0,
            _ => false,
        };
        ulong block = address & ~(PageGeometry.PmdSize - 1);
        // Compared as block <= end - PmdSize so a block at the top of the address space cannot overflow.
        return allowed && block >= start && end - start >= PageGeometry.PmdSize && block <= end - PageGeometry.PmdSize;
    }
}
