using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Faults;

/// <summary>
/// The classic fault path (<c>do_user_addr_fault</c> holding <c>mmap_lock</c> for read): find the VMA, check the
/// access, <c>handle_mm_fault</c>; on RETRY loop once more with <see cref="FaultFlags.Tried"/>.
/// </summary>
internal static class ClassicFaultPath
{
    /// <summary>Handles a fault; the result is final (no RETRY escapes).</summary>
    public static FaultResult Handle(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        while (true)
        {
            mm.MmapLock.EnterRead();
            FaultResult result;
            try
            {
                result = HandleLocked(ref fault);
            }
            finally
            {
                mm.MmapLock.ExitRead();
            }
            if ((result & FaultResult.Retry) == 0)
            {
                return result;
            }
            fault.Cpu.Counters.Add(VmEvent.ClassicRetry);
            if ((fault.Flags & FaultFlags.Tried) != 0 && (fault.Flags & FaultFlags.AllowRetry) == 0)
            {
                return FaultResult.SigBus;
            }
            fault.Flags |= FaultFlags.Tried;
        }
    }

    private static FaultResult HandleLocked(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        // Under the read lock no writer runs, so the published version is the current one.
        Vma? vma = VmaTree.Containing(mm.Tree.Published, fault.Address);
        if (vma is null)
        {
            fault.Cpu.Counters.Add(VmEvent.SegvMapErr);
            fault.Vma = null;
            return FaultResult.SigSegv;
        }
        mm.Probes.Hit(ProbePoint.ClassicLocked);
        if (AccessCheck.IsError(vma.Flags, fault.Access))
        {
            fault.Vma = vma;
            fault.Cpu.Counters.Add(VmEvent.SegvAccErr);
            return FaultResult.SigSegv;
        }
        fault.SnapshotStable(vma);
        fault.Cpu.Counters.Add(VmEvent.ClassicFault);
        return MemoryFaultHandler.HandleMmFault(ref fault);
    }
}
