using System.Runtime.CompilerServices;
using Faultline.Backing;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// The reclaim state of one arena (the kernel's <c>pglist_data</c> for a single node, with the swap areas): the
/// swap space, the background reclaimer, the node's event counters (<c>/proc/vmstat</c> is system-wide: every
/// address space over the arena reports the same reclaim counts). Exists only when a swap area was configured.
/// </summary>
/// <remarks>
/// Thread-safety: every member is thread-safe. Lifetime: each address space over the arena is a user
/// (<see cref="Attach"/>, <see cref="Detach"/>, in step with <see cref="PhysicalMemory.AddUser"/>); the last one stops
/// the reclaimer and closes the areas before the arena goes back to the host. The registry is weak: nothing static
/// keeps an arena or its node alive.
/// </remarks>
internal sealed class MemoryNode
{
    private static readonly ConditionalWeakTable<PhysicalMemory, MemoryNode> s_nodes = [];

    private readonly Kswapd? _kswapd;
    private int _users;
    private int _nextLruvec;

    private MemoryNode(PhysicalMemory memory, SwapSettings settings)
    {
        Memory = memory;
        Settings = settings;
        ISwapArea area = settings.FilePath is null
            ? new CompressedSwapArea(settings.Slots)
            : new FileSwapArea(settings.FilePath, settings.Slots);
        Swap = new SwapSpace(memory, [area]);
        memory.EnableReclaim(settings.LowWatermark, settings.HighWatermark);
        if (settings.BackgroundReclaim)
        {
            _kswapd = new Kswapd(this);
        }
    }

    /// <summary>The arena.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The settings the node was made with (the first address space's).</summary>
    public SwapSettings Settings { get; }

    /// <summary>The swap areas and their cache.</summary>
    public SwapSpace Swap { get; }

    /// <summary>The node's event counters (reclaim and swap events), added to every address space's totals.</summary>
    public EventCounters Counters { get; } = new();

    /// <summary>
    /// The node of <paramref name="memory"/>, made on the first call with swap settings, as one more user; null when the
    /// arena has none (its first address space configured no swap).
    /// </summary>
    public static MemoryNode? Attach(PhysicalMemory memory, SwapSettings? settings)
    {
        lock (s_nodes)
        {
            if (!s_nodes.TryGetValue(memory, out MemoryNode? node))
            {
                if (settings is null || memory.Users > 1)
                {
                    return null;
                }
                node = new MemoryNode(memory, settings);
                s_nodes.Add(memory, node);
            }
            node._users++;
            return node;
        }
    }

    /// <summary>
    /// The node of <paramref name="memory"/> as one more user, if it has one now (a memory group's limit write reclaims
    /// through it); null otherwise. The caller holds a user of the arena.
    /// </summary>
    public static MemoryNode? AttachExisting(PhysicalMemory memory)
    {
        lock (s_nodes)
        {
            if (!s_nodes.TryGetValue(memory, out MemoryNode? node))
            {
                return null;
            }
            node._users++;
            return node;
        }
    }

    /// <summary>One user less; the last stops the reclaimer and closes the swap areas (before the arena goes).</summary>
    public void Detach()
    {
        lock (s_nodes)
        {
            if (--_users > 0)
            {
                return;
            }
            s_nodes.Remove(Memory);
        }
        _kswapd?.Stop();
        Swap.Dispose();
    }

    /// <summary>
    /// Where global reclaim starts its walk over the groups' lists (the kernel's <c>mem_cgroup_iter</c> with a shared
    /// cursor), so a small direct-reclaim batch does not always take from the same group.
    /// </summary>
    public int NextLruvec(int lruvecs) => (int)((uint)Interlocked.Increment(ref _nextLruvec) % (uint)lruvecs);

    /// <summary>
    /// <c>__alloc_pages_direct_reclaim</c>: a fault found no free frame; reclaims a batch on the calling thread (which
    /// holds no lock) and wakes the background reclaimer. True when it made progress: it freed frames, or frames are
    /// free now (freed elsewhere).
    /// </summary>
    public bool DirectReclaim()
    {
        Counters.AddShared(VmEvent.AllocStall);
        Memory.WakeReclaim();
        return PageReclaim.Shrink(this, PageReclaim.Batch, direct: true) > 0 || Memory.FreeFrames > 0;
    }
}
