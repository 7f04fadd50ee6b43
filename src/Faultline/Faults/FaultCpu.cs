using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Physical;

namespace Faultline.Faults;

/// <summary>
/// The per-thread state a fault runs with (what the kernel takes from <c>current</c> and the local CPU): the read
/// section, the frame cache, the event counters, and the claim that marks the thread inside a slow path. Owned by one
/// Cpu, used by one thread at a time.
/// </summary>
internal sealed class FaultCpu
{
    /// <summary>Creates the state over an arena and a grace-period domain.</summary>
    public FaultCpu(PhysicalMemory memory, RcuDomain rcu)
    {
        Frames = new FrameCache(memory);
        Reader = new RcuReader(rcu.Generation);
    }

    /// <summary>This Cpu's read section.</summary>
    public RcuReader Reader { get; }
    /// <summary>This Cpu's free frames.</summary>
    public FrameCache Frames { get; }
    /// <summary>This Cpu's counters.</summary>
    public EventCounters Counters { get; } = new();
    /// <summary>The thread inside this Cpu's slow path, if any.</summary>
    public UseClaim Claim { get; } = new();
    /// <summary>This Cpu's access to a memory-mapped I/O region, carried by its faults.</summary>
    public DeviceRequest Device { get; } = new();
}
