using Faultline.Areas;

namespace Faultline.Mm;

/// <summary>
/// <c>anon_vma_prepare</c>: gives a VMA an anon_vma, reusing a compatible neighbour's (<c>find_mergeable_anon_vma</c>).
/// Used by the anonymous fault (<c>vmf_anon_prepare</c>) and by stack expansion (<c>expand_downwards</c> prepares it
/// before it moves the VMA's start). The caller holds the mmap lock, for read or write.
/// </summary>
internal static class AnonVmaPreparation
{
    /// <summary>Assigns <paramref name="vma"/> an anon_vma unless it has one (one assignment wins a race).</summary>
    public static void Prepare(MemoryDescriptor mm, Vma vma)
    {
        if (vma.AnonVma is not null)
        {
            return;
        }
        AnonVma anonVma = FindMergeable(mm.Tree, vma) ?? new AnonVma();
        // The family lock, then page_table_lock (anon_vma_prepare's order): the VMA is linked for the reverse map
        // in the same step that gives it the anon_vma, so no page of it is ever unreachable from its frame.
        anonVma.EnterFamilyLock();
        mm.PageTable.EnterPageTableLock();
        if (vma.AnonVma is null)
        {
            vma.AnonVma = anonVma;
            anonVma.LinkUnderLock(vma, mm);
        }
        mm.PageTable.ExitPageTableLock();
        anonVma.ExitFamilyLock();
    }

    // find_mergeable_anon_vma: the next VMA first, then the previous, if compatible (adjacent, same backing and
    // policy, flags differing only in access bits, page offsets continuous) and its anon_vma chain is singular
    // (reusable_anon_vma): one forked from another would give this VMA links it must not have.
    private static AnonVma? FindMergeable(VmaTree tree, Vma vma)
    {
        Vma? next = tree.FindFirstEndingAbove(vma.End);
        if (next is not null && VmaMergeRules.AnonVmaCompatible(vma, next) && next.AnonVma is { Parent: null } fromNext)
        {
            return fromNext;
        }
        Vma? prev = tree.FindLastStartingBelow(vma.Start);
        if (prev is not null && VmaMergeRules.AnonVmaCompatible(prev, vma) && prev.AnonVma is { Parent: null } fromPrev)
        {
            return fromPrev;
        }
        return null;
    }
}
