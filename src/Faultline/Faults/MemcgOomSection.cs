namespace Faultline.Faults;

/// <summary>
/// The memcg OOM section around a fault handler, as <c>handle_mm_fault</c> and the SPF series'
/// <c>__handle_speculative_fault</c> wrap theirs: <c>mem_cgroup_oom_enable()</c>; the handler;
/// <c>mem_cgroup_oom_disable()</c>; and "if (task_in_memcg_oom(current) &amp;&amp; !(ret &amp; VM_FAULT_OOM))
/// mem_cgroup_oom_synchronize(false)": a charge that failed but was coped with leaves no state behind.
/// </summary>
internal static class MemcgOomSection
{
    /// <summary>A handler taking the fault by reference.</summary>
    public delegate FaultResult Handler(ref FaultContext fault);

    /// <summary>Runs <paramref name="handler"/> inside the section and returns its result.</summary>
    public static FaultResult Run(ref FaultContext fault, Handler handler)
    {
        MemcgOomState state = fault.Cpu.Memcg;
        FaultResult result;
        bool returned = false;
        state.Enable();
        try
        {
            result = handler(ref fault);
            returned = true;
        }
        finally
        {
            state.Disable();
            if (!returned)
            {
                // A handler that threw leaves nothing for the fault's end either.
                state.Clear();
            }
        }
        if (state.Group is not null && (result & FaultResult.Oom) == 0)
        {
            state.Clear();
        }
        return result;
    }
}
