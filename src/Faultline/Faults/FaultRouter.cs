using Faultline.Areas;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Faults;

/// <summary>
/// Chooses the fault path (the arch fault handler's order in the kernel): the address space's fast path first —
/// speculative or VMA lock — and on RETRY the classic mmap-lock path with <see cref="FaultFlags.Tried"/>. Maps the
/// final result to what the accessing Cpu sees.
/// </summary>
internal static class FaultRouter
{
    // Direct-reclaim rounds in a row that free nothing before a fault gives up with VM_FAULT_OOM (the allocator's
    // MAX_RECLAIM_RETRIES of no_progress_loops), and the most rounds in all.
    private const int NoProgressRounds = 16;
    private const int MaxReclaimRounds = 1024;

    /// <summary>
    /// Raises a fault for an access and returns its outcome; <paramref name="extra"/> adds flags the caller asks for
    /// (<see cref="FaultFlags.Unshare"/> from a read pin).
    /// </summary>
    public static AccessOutcome Fault(MemoryDescriptor mm, FaultCpu cpu, ulong address, AccessKind access, FaultFlags extra = FaultFlags.None)
    {
        cpu.Counters.Add(VmEvent.PageFault);
        cpu.Device.Clear();
        var fault = new FaultContext(mm, cpu, address, access);
        fault.Flags |= extra;
        FaultResult result = FaultResult.Retry;
        switch (mm.Settings.FaultPath)
        {
            case FaultPath.Speculative:
                result = SpeculativeFaultPath.Handle(ref fault);
                if ((result & FaultResult.Retry) != 0)
                {
                    cpu.Counters.Add(VmEvent.SpeculativeFallback);
                }
                break;
            case FaultPath.VmaLock:
                result = VmaLockFaultPath.Handle(ref fault);
                break;
        }
        if ((result & FaultResult.Retry) != 0)
        {
            bool fellBack = mm.Settings.FaultPath != FaultPath.MmapLock;
            fault = new FaultContext(mm, cpu, address, access);
            fault.Flags |= extra;
            if (fellBack)
            {
                fault.Flags |= FaultFlags.Tried;
            }
            result = ClassicFaultPath.Handle(ref fault);
        }
        // __alloc_pages_slowpath: no free frame; with a swap area, direct reclaim (no lock held here) and a new attempt,
        // until reclaim stops making progress: other Cpus may take the frames one round freed before this one retries.
        for (int stalls = 0, rounds = 0; (result & FaultResult.Oom) != 0 && mm.Node is { } node && stalls < NoProgressRounds
            && rounds < MaxReclaimRounds; rounds++)
        {
            stalls = node.DirectReclaim() ? 0 : stalls + 1;
            fault = new FaultContext(mm, cpu, address, access);
            fault.Flags |= extra;
            result = ClassicFaultPath.Handle(ref fault);
        }
        return Outcome(ref fault, result);
    }

    private static AccessOutcome Outcome(ref FaultContext fault, FaultResult result)
    {
        if ((result & FaultResult.Error) == 0)
        {
            fault.Cpu.Counters.Add(VmEvent.FaultHandled);
            return AccessOutcome.Ok;
        }
        if ((result & FaultResult.Oom) != 0)
        {
            fault.Cpu.Counters.Add(VmEvent.OutOfMemory);
            return AccessOutcome.OutOfMemory;
        }
        if ((result & FaultResult.SigBus) != 0)
        {
            return AccessOutcome.BusError;
        }
        return fault.Vma is null ? AccessOutcome.SegvMapErr : AccessOutcome.SegvAccErr;
    }
}
