namespace Faultline.Physical;

/// <summary>The arena's side of page reclaim: its LRU lists and the low/high watermarks that wake the reclaimer.</summary>
internal sealed unsafe partial class PhysicalMemory
{
    /// <summary>
    /// Groups that can be made over one arena, the arena's own list (uncharged frames, index 0) included; the kernel's
    /// limit is <c>MEM_CGROUP_ID_MAX</c>, reached here much sooner because each group's lists have sentinels in
    /// <see cref="FrameLru"/>'s arrays.
    /// </summary>
    public const int MaxLruvecs = 64;

    private FrameLru? _lru;
    private int _lruvecs = 1;
    private readonly ChargeGroup?[] _groups = new ChargeGroup?[MaxLruvecs];
    private int _lowWatermark;
    private int _highWatermark;
    private readonly SemaphoreSlim _reclaimWanted = new(0, 1);

    /// <summary>The LRU lists (the node's <c>lruvec</c>s); null until <see cref="EnableReclaim"/>.</summary>
    public FrameLru? Lru => Volatile.Read(ref _lru);

    /// <summary><c>low_wmark_pages</c>: below this many free frames the allocator wakes the reclaimer.</summary>
    public int LowWatermark => Volatile.Read(ref _lowWatermark);

    /// <summary><c>high_wmark_pages</c>: the reclaimer works until this many frames are free.</summary>
    public int HighWatermark => Volatile.Read(ref _highWatermark);

    /// <summary>LRU list pairs handed out so far (the arena's own and one per group).</summary>
    public int LruvecCount => Volatile.Read(ref _lruvecs);

    /// <summary>
    /// A new group over this arena with its own LRU list pair (<c>mem_cgroup_alloc</c>'s id) and a limit of
    /// <paramref name="maxPages"/>, or null when <see cref="MaxLruvecs"/> pairs are in use. Pairs are not reused: a
    /// group's frames may outlive it on its lists.
    /// </summary>
    public ChargeGroup? TryAddGroup(long maxPages)
    {
        int count = Volatile.Read(ref _lruvecs);
        while (count < MaxLruvecs)
        {
            // Full fence; pairs with the acquire read of LruvecCount by reclaim's walk over the groups.
            int seen = Interlocked.CompareExchange(ref _lruvecs, count + 1, count);
            if (seen == count)
            {
                var group = new ChargeGroup(this, count, maxPages);
                Volatile.Write(ref _groups[count], group);
                return group;
            }
            count = seen;
        }
        return null;
    }

    // The last user is gone: every frame goes back to the host at once, so every group's charges go with them.
    private void UnchargeAll()
    {
        foreach (ChargeGroup? group in _groups)
        {
            group?.UnchargeAll();
        }
    }

    /// <summary>
    /// Starts keeping LRU lists and watermarks (a swap area was configured). Called once, before any frame is put on a
    /// list; later calls change only the watermarks.
    /// </summary>
    public void EnableReclaim(int lowWatermark, int highWatermark)
    {
        Volatile.Write(ref _lowWatermark, lowWatermark);
        Volatile.Write(ref _highWatermark, Math.Max(lowWatermark, highWatermark));
        // Release: the lists are complete before a fault can see them and add a frame.
        Interlocked.CompareExchange(ref _lru, new FrameLru(this), null);
    }

    /// <summary>
    /// <c>kswapd</c>'s sleep: waits until an allocation left fewer than <see cref="LowWatermark"/> frames free or
    /// <paramref name="timeout"/> passed. True when woken.
    /// </summary>
    public bool WaitForReclaimWanted(TimeSpan timeout) => _reclaimWanted.Wait(timeout);

    /// <summary><c>wakeup_kswapd</c>, from anyone who saw memory run low (a failed allocation, the allocator itself).</summary>
    public void WakeReclaim()
    {
        try
        {
            _reclaimWanted.Release();
        }
        catch (SemaphoreFullException)
        {
            // Already woken: one pending wake is enough.
        }
    }

    // Called by every allocation once the lists exist: below the low watermark the reclaimer is woken.
    private void CheckWatermark()
    {
        if (FreeFrames < Volatile.Read(ref _lowWatermark) && _reclaimWanted.CurrentCount == 0)
        {
            WakeReclaim();
        }
    }

    /// <summary>A frame's contents, for a page-out (the caller holds a reference and the frame is mapped nowhere).</summary>
    public ReadOnlySpan<byte> Contents(long pfn) => new(FrameAddress(pfn), FrameSize);

    /// <summary>
    /// A freshly allocated frame about to be filled whole (<c>swap_read_folio</c>): checked for poison as
    /// <see cref="Copy"/> does, marked as not zero, and returned for the caller to write.
    /// </summary>
    public Span<byte> PrepareFill(long pfn)
    {
        ref FrameInfo info = ref _frames[pfn];
        if (PoisonFreedFrames && !info.Zeroed)
        {
            CheckPoison(pfn);
        }
        info.Zeroed = false;
        return new Span<byte>(FrameAddress(pfn), FrameSize);
    }

    /// <summary>
    /// <c>folio_ref_freeze</c>: drops the count from <paramref name="expected"/> to 0 in one step, or does nothing and
    /// returns false when other references exist (a lockless lookup took one). A frozen frame can no longer be taken
    /// with <see cref="TryGet"/>; its freezer frees it with <see cref="FreeBatch"/>.
    /// </summary>
    public bool TryFreeze(long pfn, int expected) =>
        // Full fence; pairs with TryGet's compare-and-swap: exactly one of them wins on a given count.
        Interlocked.CompareExchange(ref _frames[pfn].RefCount, 0, expected) == expected;
}
