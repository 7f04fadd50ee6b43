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
        // VM_FAULT_OOM, handled with no lock held. A charge over a group's limit (the Cpu's memcg OOM record):
        // pagefault_out_of_memory's mem_cgroup_oom_synchronize(true), reclaim from that group or its OOM, then the
        // access again. No free frame (__alloc_pages_slowpath): with a swap area, direct reclaim and a new attempt
        // until reclaim stops making progress; other Cpus may take the frames one round freed before this one retries.
        for (int stalls = 0, rounds = 0; (result & FaultResult.Oom) != 0 && rounds < MaxReclaimRounds; rounds++)
        {
            if (cpu.Memcg.Take() is { } group)
            {
                if (!GroupReclaim.HandleFaultOom(mm.Node, group))
                {
                    cpu.Counters.Add(VmEvent.OomKill);
                    break;
                }
            }
            else if (mm.Node is { } node && stalls < NoProgressRounds)
            {
                stalls = node.DirectReclaim() ? 0 : stalls + 1;
            }
            else
            {
                break;
            }
            fault = new FaultContext(mm, cpu, address, access);
            fault.Flags |= extra;
            result = ClassicFaultPath.Handle(ref fault);
        }
        // A record the bounded loop did not get to is dropped: the next fault starts clean.
        cpu.Memcg.Clear();
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
