using Faultline.Areas;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Mm;

/// <summary>
/// <c>rmap_walk_anon</c>: from an anonymous frame to every page-table entry of every address space that maps it,
/// through the anon_vma its <c>page->mapping</c> names and the VMAs linked into it (<see cref="AnonVma"/>).
/// </summary>
/// <remarks>
/// Runs without any address space's mmap lock, as reclaim does: the family's lock keeps every linked VMA's page
/// tables alive (a VMA is unlinked under that lock before the tables under it can be freed), and each entry is read
/// under its PTE lock. The caller holds a reference on the frame, so its owner and index cannot change under the walk.
/// </remarks>
internal static class ReverseMap
{
    /// <summary>
    /// Every (address space, address) whose entry maps <paramref name="pfn"/> now. Empty for a frame that is not
    /// anonymous (the zero frame, a backing's page: their reverse map is the backing's business).
    /// </summary>
    public static List<(MemoryDescriptor Mm, ulong Address)> Find(PhysicalMemory memory, long pfn)
    {
        var found = new List<(MemoryDescriptor, ulong)>();
        Walk(memory, pfn, (mm, _, address, _) =>
        {
            if (mm.PageTable.MapsFrameLocked(address, pfn))
            {
                found.Add((mm, address));
            }
            return true;
        });
        return found;
    }

    /// <summary>
    /// The walk behind <see cref="Find"/> (<c>rmap_walk_anon</c> with an <c>rmap_one</c>): calls
    /// <paramref name="visit"/> with the family's lock held for every linked VMA (and its address) where the frame's index
    /// falls and a PTE table exists, with the table's location; the visitor takes the PTE lock itself and checks the
    /// entry. It returns false to stop the walk. Nothing is visited for a frame that is not anonymous.
    /// </summary>
    public static void Walk(PhysicalMemory memory, long pfn, Func<MemoryDescriptor, Vma, ulong, PteLocation, bool> visit)
    {
        ref FrameInfo info = ref memory.Info(pfn);
        if (info.Kind != FrameKind.Anonymous || info.Mapping is not AnonVma anonVma)
        {
            return;
        }
        ulong index = info.Index;
        anonVma.EnterFamilyLock();
        try
        {
            foreach ((Vma vma, object owner) in anonVma.LinkedUnderLock())
            {
                // vma_address: where the page's index falls in this VMA, if it does.
                if (index < vma.PageOffset || index - vma.PageOffset >= vma.Length >> PageGeometry.PageShift)
                {
                    continue;
                }
                ulong address = vma.Start + ((index - vma.PageOffset) << PageGeometry.PageShift);
                var mm = (MemoryDescriptor)owner;
                if (mm.PageTable.WalkLockless(address, out PteLocation at, out _) == WalkStatus.Ok && !visit(mm, vma, address, at))
                {
                    return;
                }
            }
        }
        finally
        {
            anonVma.ExitFamilyLock();
        }
    }
}
