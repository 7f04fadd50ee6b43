namespace Faultline.Physical;

/// <summary>What a <see cref="ChargeGroup"/> counts: its <c>memory.events</c> and the event lines of its <c>memory.stat</c>.</summary>
internal enum ChargeEvent
{
    /// <summary><c>memory.events</c> <c>max</c>: a charge would have passed the limit (reclaim or OOM followed).</summary>
    Max,
    /// <summary><c>memory.events</c> <c>oom</c>: reclaim could not bring the usage under the limit.</summary>
    Oom,
    /// <summary><c>memory.events</c> <c>oom_kill</c>: an access was failed as the group's OOM victim.</summary>
    OomKill,
    /// <summary><c>memory.stat</c> <c>pgscan</c>: pages reclaim looked at on the group's inactive list.</summary>
    Scan,
    /// <summary><c>memory.stat</c> <c>pgsteal</c>: pages reclaim freed from the group.</summary>
    Steal,
    /// <summary><c>memory.stat</c> <c>pswpout</c>: the group's pages written to a swap area.</summary>
    SwapOut,
    /// <summary>
    /// <c>memory.stat</c> <c>workingset_refault_anon</c>: evicted anonymous pages faulted back in (every read from a swap
    /// area counts: no shadow entries are kept, so the refault distance is not checked).
    /// </summary>
    RefaultAnon,
    /// <summary>The number of events.</summary>
    Count,
}
