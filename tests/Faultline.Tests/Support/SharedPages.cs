using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;
using Xunit;

namespace Faultline.Tests.Support;

/// <summary>
/// Makes two address spaces over one guest RAM map the same frame, as fork's <c>copy_present_pte</c> will: the
/// source entry becomes read-only, the frame gains a reference and a map count and stops being exclusive.
/// </summary>
internal static class SharedPages
{
    /// <summary>Maps in <paramref name="to"/> (which has a VMA there) the frame <paramref name="from"/> maps at <paramref name="address"/>.</summary>
    public static long Share(AddressSpace from, AddressSpace to, ulong address)
    {
        MemoryDescriptor source = from.Descriptor, destination = to.Descriptor;
        Assert.Same(source.Memory, destination.Memory);
        var frames = new FrameCache(source.Memory);
        Assert.True(source.PageTable.WalkAllocate(address, frames, out PteLocation at));
        ref int ptl = ref source.PageTable.PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        ulong pte = source.PageTable.ReadPte(at);
        Assert.True(Pte.MapsFrame(pte) && (pte & Pte.Special) == 0, "the source must map a refcounted frame");
        long pfn = Pte.Frame(pte);
        source.Memory.DuplicateMapping(pfn);
        ulong readOnly = pte & ~Pte.Writable;
        source.PageTable.WritePte(at, readOnly);
        SpinWord.Exit(ref ptl);
        // fork's flush_tlb_mm: no Cpu of the source keeps a writable translation.
        source.Rcu.Synchronize();

        Assert.True(destination.PageTable.WalkAllocate(address, frames, out PteLocation target));
        ref int targetPtl = ref destination.PageTable.PteLock(target.PteTable);
        SpinWord.Enter(ref targetPtl);
        Assert.True(Pte.IsNone(destination.PageTable.ReadPte(target)));
        destination.PageTable.WritePte(target, readOnly);
        SpinWord.Exit(ref targetPtl);
        destination.SharedCounters.AddShared(VmEvent.AnonPages, 1);
        frames.DrainAll();
        return pfn;
    }
}
