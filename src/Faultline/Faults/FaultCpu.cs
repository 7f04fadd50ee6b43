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
    private static long s_nextId;

    /// <summary>Creates the state over an arena and a grace-period domain.</summary>
    public FaultCpu(PhysicalMemory memory, RcuDomain rcu)
    {
        Frames = new FrameCache(memory);
        Reader = new RcuReader(rcu.Generation);
    }

    /// <summary>A process-unique number (the Cpu id a user-fault event carries).</summary>
    public long Id { get; } = Interlocked.Increment(ref s_nextId);

    /// <summary>This Cpu's read section.</summary>
    public RcuReader Reader { get; }
    /// <summary>This Cpu's free frames.</summary>
    public FrameCache Frames { get; }
    /// <summary>This Cpu's counters.</summary>
    public EventCounters Counters { get; } = new();
    /// <summary>The memory-cgroup OOM state of the task this Cpu runs (<c>memcg_may_oom</c>, <c>memcg_in_oom</c>).</summary>
    public MemcgOomState Memcg { get; } = new();
    /// <summary>The thread inside this Cpu's slow path, if any.</summary>
    public UseClaim Claim { get; } = new();

    /// <summary>True while a write fault's notice for a write watch waits for the Cpu to deliver it.</summary>
    public bool HasWatchedWrite { get; private set; }

    /// <summary>The faulting address of the pending write-watch notice.</summary>
    public ulong WatchedWriteAddress { get; private set; }

    /// <summary>Records that the fault at <paramref name="address"/> disarmed a write watch (owner thread only).</summary>
    public void NoteWatchedWrite(ulong address)
    {
        WatchedWriteAddress = address;
        HasWatchedWrite = true;
    }

    /// <summary>Takes the pending write-watch notice, if any (owner thread only).</summary>
    public bool TakeWatchedWrite(out ulong address)
    {
        address = WatchedWriteAddress;
        bool pending = HasWatchedWrite;
        HasWatchedWrite = false;
        return pending;
    }

    /// <summary>This Cpu's access to a memory-mapped I/O region, carried by its faults.</summary>
    public DeviceRequest Device { get; } = new();
}
