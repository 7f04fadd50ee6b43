using System.Runtime.InteropServices;
using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// What one <see cref="MmuGather.Finish"/> hands to the grace-period domain: the gathered frame references and table
/// pages, dropped and freed once the grace period ends (the kernel's batch freed by <c>tlb_remove_table_rcu</c>). The
/// gather swaps its lists with this object's empty ones instead of copying, and the object goes back to its gather
/// after it ran, so a finish allocates nothing in steady state.
/// </summary>
/// <remarks>
/// Filled by the gather's thread, run by whichever thread completes the grace period: the domain's lock orders the
/// two (the deferral is queued under it, and the grace period takes the queue under it).
/// </remarks>
internal sealed class GatherRelease
{
    private static readonly Action<object?> s_run = static state => ((GatherRelease)state!).Run();

    private readonly MmuGather _owner;
    private readonly PhysicalMemory _memory;
    private List<int> _frames = [];
    private List<int> _tables = [];

    /// <summary>A release object that returns to <paramref name="owner"/> after running.</summary>
    public GatherRelease(MmuGather owner, PhysicalMemory memory)
    {
        _owner = owner;
        _memory = memory;
    }

    /// <summary>
    /// Takes <paramref name="frames"/> and <paramref name="tables"/> (the caller gets this object's empty lists back)
    /// and queues the release after the next grace period of <paramref name="rcu"/>.
    /// </summary>
    public void Defer(RcuDomain rcu, ref List<int> frames, ref List<int> tables)
    {
        Debug.Assert(_frames.Count == 0 && _tables.Count == 0, "a release deferred twice");
        (_frames, frames) = (frames, _frames);
        (_tables, tables) = (tables, _tables);
        rcu.Defer(s_run, this);
    }

    private void Run()
    {
        _memory.PutBatch(CollectionsMarshal.AsSpan(_frames));
        _memory.FreeBatch(CollectionsMarshal.AsSpan(_tables));
        _frames.Clear();
        _tables.Clear();
        _owner.ReturnRelease(this);
    }
}
