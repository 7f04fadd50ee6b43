using Faultline.Physical;

namespace Faultline.Faults;

/// <summary>
/// A Cpu's memory-cgroup OOM state, the kernel's <c>current->memcg_may_oom</c> and <c>current->memcg_in_oom</c> (as
/// in 4.17, the kernel the SPF series is based on): a fault handler runs inside an OOM-enabled section
/// (<see cref="Enable"/>, <see cref="Disable"/>, <c>mem_cgroup_oom_enable</c>/<c>_disable</c>); a charge that fails
/// there records its group (<see cref="Enter"/>, <c>mem_cgroup_oom</c>) instead of handling the OOM under the fault's
/// locks. After the handler, a result other than OOM cleans the record up (<see cref="Clear"/>,
/// <c>mem_cgroup_oom_synchronize(false)</c>); an OOM result leaves it for the fault's end, where the group's OOM is
/// handled with no lock held (<see cref="Take"/>, <c>mem_cgroup_oom_synchronize(true)</c> from
/// <c>pagefault_out_of_memory</c>).
/// </summary>
/// <remarks>
/// Written only by the thread running the Cpu's fault. Reads from other threads (tests stopped at a probe point) are
/// volatile and ordered by the probe's own synchronisation.
/// </remarks>
internal sealed class MemcgOomState
{
    private bool _enabled;
    private ChargeGroup? _group;

    /// <summary><c>memcg_may_oom</c>: inside a handler's OOM-enabled section.</summary>
    public bool Enabled => Volatile.Read(ref _enabled);

    /// <summary><c>memcg_in_oom</c>: the group whose charge failed in the section, until the fault's end takes it.</summary>
    public ChargeGroup? Group => Volatile.Read(ref _group);

    /// <summary><c>mem_cgroup_oom_enable</c>.</summary>
    public void Enable()
    {
        Debug.Assert(!_enabled, "OOM sections do not nest");
        Volatile.Write(ref _enabled, true);
    }

    /// <summary><c>mem_cgroup_oom_disable</c>.</summary>
    public void Disable() => Volatile.Write(ref _enabled, false);

    /// <summary>
    /// <c>mem_cgroup_oom</c>: a charge to <paramref name="group"/> failed; inside an enabled section the group is kept
    /// for the fault's end. Outside one (a populate's fault is inside one too) the caller's error is all there is.
    /// </summary>
    public void Enter(ChargeGroup group)
    {
        if (_enabled)
        {
            Volatile.Write(ref _group, group);
        }
    }

    /// <summary><c>mem_cgroup_oom_synchronize(false)</c>: the handler coped (no OOM result); forget the record.</summary>
    public void Clear() => Volatile.Write(ref _group, null);

    /// <summary><c>mem_cgroup_oom_synchronize(true)</c>'s first step: the recorded group, now cleared; null if none.</summary>
    public ChargeGroup? Take()
    {
        ChargeGroup? group = _group;
        Volatile.Write(ref _group, null);
        return group;
    }
}
