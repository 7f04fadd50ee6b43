namespace Faultline.Physical;

/// <summary>
/// The accounting core of a memory cgroup (the kernel's <c>struct mem_cgroup</c> with its <c>page_counter</c>): the
/// frames charged to it (<c>memory.current</c>), its limit (<c>memory.max</c>), the high-water mark
/// (<c>memory.peak</c>), its events (<c>memory.events</c>) and a few <c>memory.stat</c> counts, all in pages. A frame's
/// charge is kept in <see cref="FrameInfo.Charge"/> (<c>folio->memcg_data</c>) and dropped by the arena's free.
/// </summary>
/// <remarks>
/// Thread-safety: every member is thread-safe. A charge is one <see cref="Interlocked.Add(ref long, long)"/> on the
/// usage, undone when it overshot the limit (<c>page_counter_try_charge</c>), so concurrent charges never leave the
/// usage above a limit they saw; a limit lowered below the usage only makes new charges fail. The kernel batches
/// charges through a per-cpu stock; one atomic per fault is cheap enough here.
/// </remarks>
internal sealed class ChargeGroup
{
    /// <summary><c>PAGE_COUNTER_MAX</c>: the limit of a group that has none (<c>max</c>).</summary>
    public const long Unlimited = long.MaxValue;

    private long _usage;
    private long _max;
    private long _peak;
    private long _anon;
    private long _file;
    private long _shmem;
    private readonly long[] _events = new long[(int)ChargeEvent.Count];

    /// <summary>A group over <paramref name="memory"/> with list index <paramref name="lruvec"/> and a limit in pages.</summary>
    public ChargeGroup(PhysicalMemory memory, int lruvec, long maxPages)
    {
        Memory = memory;
        Lruvec = lruvec;
        _max = maxPages;
    }

    /// <summary>The arena whose frames the group is charged for.</summary>
    public PhysicalMemory Memory { get; }

    /// <summary>The group's LRU lists in the arena's <see cref="FrameLru"/> (its <c>lruvec</c>).</summary>
    public int Lruvec { get; }

    /// <summary>
    /// <c>mem_cgroup_out_of_memory</c>'s stand-in: asked once reclaim failed; true when it made room (raised the limit,
    /// freed memory) and the charge is to be tried again. Set by the public group.
    /// </summary>
    public Func<bool>? OutOfMemory { get; set; }

    /// <summary><c>memory.current</c> in pages (acquire read; pairs with the Interlocked updates).</summary>
    public long Usage => Volatile.Read(ref _usage);

    /// <summary><c>memory.max</c> in pages (<see cref="Unlimited"/> for none).</summary>
    public long Max
    {
        get => Volatile.Read(ref _max);
        set => Volatile.Write(ref _max, value);
    }

    /// <summary><c>memory.peak</c> in pages.</summary>
    public long Peak => Volatile.Read(ref _peak);

    /// <summary><c>memory.stat</c> <c>anon</c>, <c>file</c>, <c>shmem</c> in pages.</summary>
    public long AnonPages => Volatile.Read(ref _anon);

    /// <inheritdoc cref="AnonPages"/>
    public long FilePages => Volatile.Read(ref _file);

    /// <inheritdoc cref="AnonPages"/>
    public long ShmemPages => Volatile.Read(ref _shmem);

    /// <summary>Pages the group could still charge before its limit.</summary>
    public long Margin => Math.Max(0, Max - Usage);

    /// <summary>How often an event happened.</summary>
    public long Read(ChargeEvent e) => Volatile.Read(ref _events[(int)e]);

    /// <summary>Counts an event (any thread).</summary>
    public void Count(ChargeEvent e, long n = 1) => Interlocked.Add(ref _events[(int)e], n);

    /// <summary>
    /// <c>mem_cgroup_charge</c> without the reclaim (that is the caller's, outside its locks): charges
    /// <paramref name="pages"/> for the frame <paramref name="pfn"/> (a huge block's head for 512), which must be
    /// allocated, unpublished and uncharged. False, with nothing charged and <see cref="ChargeEvent.Max"/> counted, when
    /// that would pass the limit.
    /// </summary>
    public bool TryCharge(long pfn, int pages, FrameKind kind)
    {
        if (!TryAdd(pages))
        {
            return false;
        }
        ref FrameInfo info = ref Memory.Info(pfn);
        Debug.Assert(info.Charge is null, "a frame charged twice");
        info.ChargePages = pages;
        info.ChargeKind = kind;
        Interlocked.Add(ref StatOf(kind), pages);
        // Published with the frame (the PTE's or cache index's release store) or read by its last put after the
        // full fence of the reference drop.
        info.Charge = this;
        return true;
    }

    /// <summary>
    /// Charges a published page-cache or shared-memory frame the caller holds a reference to, unless some group already
    /// pays for it (true then too). Two groups racing for it: the compare-and-swap picks one, the other gives its
    /// charge back. False, with <see cref="ChargeEvent.Max"/> counted, when the charge would pass the limit.
    /// </summary>
    public bool TryChargeShared(long pfn)
    {
        ref FrameInfo info = ref Memory.Info(pfn);
        // Acquire read; pairs with the compare-and-swap below (of this or another group).
        if (Volatile.Read(ref info.Charge) is not null)
        {
            return true;
        }
        if (!TryAdd(1))
        {
            return false;
        }
        // Both racers write the same values (one page of the frame's kind), so the loser's writes change nothing.
        info.ChargePages = 1;
        info.ChargeKind = info.Kind;
        // Full fence; pairs with the acquire read above and with the free's read after the last reference drop.
        if (Interlocked.CompareExchange(ref info.Charge, this, null) is not null)
        {
            Interlocked.Add(ref _usage, -1);
            return true;
        }
        Interlocked.Add(ref StatOf(info.Kind), 1);
        return true;
    }

    // page_counter_try_charge: the usage grows by `pages` unless that passes the limit; the peak follows.
    private bool TryAdd(int pages)
    {
        // Full fence; pairs with the uncharge's decrement: two charges racing for the last room cannot both keep it.
        long usage = Interlocked.Add(ref _usage, pages);
        if (usage > Volatile.Read(ref _max))
        {
            Interlocked.Add(ref _usage, -pages);
            Count(ChargeEvent.Max);
            return false;
        }
        long peak = Volatile.Read(ref _peak);
        while (usage > peak)
        {
            long seen = Interlocked.CompareExchange(ref _peak, usage, peak);
            if (seen == peak)
            {
                break;
            }
            peak = seen;
        }
        return true;
    }

    /// <summary>
    /// <c>mem_cgroup_uncharge</c> / <c>mem_cgroup_cancel_charge</c>: drops the charge of a frame nobody else can reach
    /// any more (its last reference is gone, or it was never published). Does nothing for an uncharged frame.
    /// </summary>
    public static void Uncharge(ref FrameInfo info)
    {
        ChargeGroup? group = info.Charge;
        if (group is null)
        {
            return;
        }
        info.Charge = null;
        int pages = info.ChargePages;
        Interlocked.Add(ref group.StatOf(info.ChargeKind), -pages);
        // Full fence; pairs with TryCharge's increment.
        Interlocked.Add(ref group._usage, -pages);
    }

    /// <summary>
    /// The arena went back to the host, and every frame with it: nothing is charged any more. Called once, by the
    /// arena's last user, when no frame can be charged or freed.
    /// </summary>
    public void UnchargeAll()
    {
        Interlocked.Exchange(ref _usage, 0);
        Interlocked.Exchange(ref _anon, 0);
        Interlocked.Exchange(ref _file, 0);
        Interlocked.Exchange(ref _shmem, 0);
    }

    /// <summary>Sets the peak to the usage now (a write to <c>memory.peak</c>).</summary>
    public void ResetPeak() => Volatile.Write(ref _peak, Usage);

    private ref long StatOf(FrameKind kind) =>
        ref kind == FrameKind.PageCache ? ref _file : ref kind == FrameKind.Shmem ? ref _shmem : ref _anon;
}
