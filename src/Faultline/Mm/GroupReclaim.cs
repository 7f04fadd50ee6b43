using Faultline.Physical;

namespace Faultline.Mm;

/// <summary>
/// Reclaim and OOM under a memory group's limit (<c>mm/memcontrol.c</c>): <c>try_to_free_mem_cgroup_pages</c> scans
/// only the group's own LRU lists, so its limit never takes a page of another group; the charge's retry loop gives up
/// after <see cref="MaxReclaimRetries"/> rounds that freed nothing; then the group is out of memory: <c>oom</c> is
/// counted and the group's handler (<see cref="ChargeGroup.OutOfMemory"/>, standing for the OOM killer) may make room.
/// </summary>
/// <remarks>
/// Runs with no lock of any address space held (at the end of a fault, or in a limit write). Without a swap area the
/// arena keeps no LRU lists and nothing can be reclaimed: a charge over the limit goes straight to the group's OOM.
/// Reclaimable here are anonymous pages (swapped out) and clean <c>MADV_FREE</c> pages (discarded); page-cache pages
/// are not reclaimed by Faultline (their backing keeps them until truncated or closed).
/// </remarks>
internal static class GroupReclaim
{
    /// <summary><c>MAX_RECLAIM_RETRIES</c>: rounds in a row that free nothing before a charge gives up.</summary>
    public const int MaxReclaimRetries = 16;

    // Most rounds in all, whatever progress they make: other Cpus of the group may take every page a round frees.
    private const int MaxRounds = 1024;

    /// <summary>
    /// <c>try_to_free_mem_cgroup_pages</c>: reclaims up to <paramref name="pages"/> (at least a batch) from the group's
    /// lists. Returns the pages freed.
    /// </summary>
    public static int TryToFree(MemoryNode? node, ChargeGroup group, long pages)
    {
        if (node?.Memory.Lru is null)
        {
            return 0;
        }
        int target = (int)Math.Clamp(pages, PageReclaim.Batch, int.MaxValue);
        return PageReclaim.ShrinkLruvec(node, group.Lruvec, target, direct: true);
    }

    /// <summary>
    /// <c>try_charge_memcg</c>'s reclaim loop: reclaims until <paramref name="pages"/> fit under the limit. False after
    /// <see cref="MaxReclaimRetries"/> rounds in a row without progress.
    /// </summary>
    public static bool MakeRoom(MemoryNode? node, ChargeGroup group, long pages)
    {
        for (int stalls = 0, rounds = 0; group.Margin < pages; rounds++)
        {
            if (stalls >= MaxReclaimRetries || rounds >= MaxRounds)
            {
                return false;
            }
            stalls = TryToFree(node, group, pages - group.Margin) > 0 ? 0 : stalls + 1;
        }
        return true;
    }

    /// <summary>
    /// <c>mem_cgroup_oom_synchronize(true)</c> for a fault whose charge failed: reclaim from the group; failing that,
    /// the group is out of memory (<c>oom</c>) and its handler is asked. True when the fault is to be retried; false
    /// when the faulting access is the victim (<c>oom_kill</c> counted by the caller's group).
    /// </summary>
    public static bool HandleFaultOom(MemoryNode? node, ChargeGroup group)
    {
        if (MakeRoom(node, group, 1))
        {
            return true;
        }
        group.Count(ChargeEvent.Oom);
        if (group.OutOfMemory?.Invoke() == true)
        {
            return true;
        }
        group.Count(ChargeEvent.OomKill);
        return false;
    }

    /// <summary>
    /// <c>memory_max_write</c> after the new limit is stored: reclaims until the usage is under it, with
    /// <see cref="MaxReclaimRetries"/> reclaim rounds that free nothing allowed; then counts <c>oom</c> and asks the
    /// group's handler, again while it reports progress. The write succeeds either way, as the kernel's does: a usage
    /// left above the limit only makes new charges fail.
    /// </summary>
    public static void ShrinkToLimit(MemoryNode? node, ChargeGroup group)
    {
        int reclaims = MaxReclaimRetries;
        int handlerRounds = MaxReclaimRetries;
        for (int rounds = 0; rounds < MaxRounds; rounds++)
        {
            long excess = group.Usage - group.Max;
            if (excess <= 0)
            {
                return;
            }
            if (reclaims > 0)
            {
                if (TryToFree(node, group, excess) == 0)
                {
                    reclaims--;
                }
                continue;
            }
            group.Count(ChargeEvent.Oom);
            if (handlerRounds-- == 0 || group.OutOfMemory?.Invoke() != true)
            {
                return;
            }
        }
    }
}
