using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Faults;

/// <summary>
/// <c>mem_cgroup_charge</c> on the fault path: a frame a fault allocates (or a page-cache page it is the first to map)
/// is charged to the faulting address space's group. A failed charge records the group in the Cpu's
/// <see cref="MemcgOomState"/> (for a 4 KiB page: a huge one falls back, as the kernel's costly orders never OOM)
/// and the handler answers <see cref="FaultResult.Oom"/>; the group's reclaim runs at the fault's end, holding no lock.
/// </summary>
internal static class FaultCharge
{
    /// <summary>Charges a frame this fault allocated and has not published. False: over the limit, nothing charged.</summary>
    public static bool TryCharge(ref FaultContext fault, long pfn, int pages, FrameKind kind)
    {
        ChargeGroup? group = fault.Mm.Group;
        if (group is null || group.TryCharge(pfn, pages, kind))
        {
            return true;
        }
        Failed(ref fault, group, pages);
        return false;
    }

    /// <summary>
    /// Charges a page-cache or shared-memory page the fault holds a reference to, unless a group already pays for it
    /// (the first address space to map it pays, as the first to read it in pays on Linux).
    /// </summary>
    public static bool TryChargeShared(ref FaultContext fault, long pfn, bool recordOom = true)
    {
        ChargeGroup? group = fault.Mm.Group;
        if (group is null || group.TryChargeShared(pfn))
        {
            return true;
        }
        if (recordOom)
        {
            Failed(ref fault, group, 1);
        }
        return false;
    }

    private static void Failed(ref FaultContext fault, ChargeGroup group, int pages)
    {
        if (pages == 1)
        {
            fault.Cpu.Memcg.Enter(group);
        }
        fault.Mm.Probes.Hit(ProbePoint.MemcgChargeFailed);
    }
}
