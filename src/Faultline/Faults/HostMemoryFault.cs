using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Paging;

namespace Faultline.Faults;

/// <summary>
/// <c>handle_pte_fault</c> for host memory (a <c>VM_PFNMAP</c> VMA): the driver's <c>fault</c> calling
/// <c>vmf_insert_pfn_prot</c> (<c>insert_pfn</c>), and <c>wp_pfn_shared</c> for a write to a read-only entry. The entry
/// is special: it maps a <see cref="Physical.HostWindow"/> frame that nobody refcounts, so zap, fork and mremap carry it
/// as they carry the zero frame. Written once for the three paths: with <see cref="FaultFlags.Speculative"/> the PTE
/// lock is taken with <see cref="MemoryFaultHandler.PteMapLock"/>, which re-validates the VMA under it.
/// </summary>
internal static class HostMemoryFault
{
    /// <summary>
    /// Installs (or, for a write to a present read-only entry, upgrades) the entry for the faulting page of
    /// <paramref name="host"/> if the PTE is still <see cref="FaultContext.OriginalPte"/> under its lock. A page past
    /// the end of the host buffer is <c>VM_FAULT_SIGBUS</c>.
    /// </summary>
    public static FaultResult Handle(ref FaultContext fault, HostMemoryBacking host)
    {
        long pfn = host.FrameAt(fault.PageOffset);
        if (pfn < 0)
        {
            return FaultResult.SigBus;
        }
        fault.Mm.Probes.Hit(ProbePoint.HostFaultBeforePteLock);
        if (!MemoryFaultHandler.PteMapLock(ref fault))
        {
            return FaultResult.Retry;
        }
        PageTable table = fault.Mm.PageTable;
        ref int ptl = ref table.PteLock(fault.Location.PteTable);
        ulong pte = fault.OriginalPte;
        if (table.ReadPte(fault.Location) != pte)
        {
            // Another thread installed or changed it (or an unmap cleared it): the access is retried.
            SpinWord.Exit(ref ptl);
            fault.Cpu.Counters.Add(VmStat.VmEvent.FaultRaceLost);
            return FaultResult.Ok;
        }
        ulong dirty = fault.IsWrite ? Pte.Dirty : 0;
        ulong entry = Pte.IsNone(pte)
            // A shared VMA without write notification: vm_page_prot is writable when the VMA is (no COW to prepare).
            ? Pte.MakeLeaf(pfn, fault.Protection, writable: (fault.VmaFlags & VmFlags.Write) != 0, special: true) | Pte.Accessed | dirty
            // wp_pfn_shared (the access check allowed the write) or a spurious fault: young, and writable for a write.
            : pte | Pte.Accessed | dirty | (fault.IsWrite ? Pte.Writable : 0);
        if (entry != pte)
        {
            // Release store (set_pte_at); the host memory needs no initialising, so it orders nothing else.
            table.WritePte(fault.Location, entry);
        }
        SpinWord.Exit(ref ptl);
        return FaultResult.Ok;
    }
}
