using Faultline.Concurrency;

namespace Faultline.Physical;

/// <summary>
/// The arena's anonymous LRU lists (the kernel's <c>lruvec</c>s with <c>LRU_INACTIVE_ANON</c> and
/// <c>LRU_ACTIVE_ANON</c>): intrusive doubly linked lists of frame numbers, newest at the head, scanned from the tail.
/// A frame on a list carries <see cref="FrameFlags.Lru"/> (and <see cref="FrameFlags.Active"/> on the active list).
/// Each memory group has its own pair (<c>mem_cgroup_lruvec</c>), chosen by the frame's charge
/// (<see cref="ChargeGroup.Lruvec"/>; uncharged frames use pair 0), so reclaim under a group's limit scans only that
/// group's pages; global reclaim walks every pair. The pairs share the link arrays (a frame is on one list at most)
/// and their sentinels sit after the frames.
/// </summary>
/// <remarks>
/// Thread-safety: every member takes the lists' spin lock (a leaf: nothing is waited for under it). Isolation takes a
/// reference on each frame under the lock and clears its LRU flag, so a frame isolated by reclaim is never freed under
/// it, and a frame whose last reference is gone (<c>FreeBatch</c> sees the flag) is unlinked by its freer, not isolated.
/// </remarks>
internal sealed class FrameLru
{
    private const int Inactive = 0;
    private const int Active = 1;

    private readonly PhysicalMemory _memory;
    private readonly int[] _next;
    private readonly int[] _prev;
    private readonly int _head;   // _head + 2 * lruvec + Inactive / + Active are the lists' sentinels
    private readonly long[] _count = new long[2 * PhysicalMemory.MaxLruvecs];
    private long _total;          // frames on any list, for global reclaim's budget
    private int _lock;

    /// <summary>Empty lists over <paramref name="memory"/>'s frames.</summary>
    public FrameLru(PhysicalMemory memory)
    {
        _memory = memory;
        _head = memory.FrameCount;
        _next = new int[memory.FrameCount + _count.Length];
        _prev = new int[memory.FrameCount + _count.Length];
        for (int list = 0; list < _count.Length; list++)
        {
            _next[_head + list] = _prev[_head + list] = _head + list;
        }
    }

    /// <summary>Frames on every list now.</summary>
    public long TotalCount => Volatile.Read(ref _total);

    /// <summary>Frames on the inactive list of <paramref name="lruvec"/> now.</summary>
    public long InactiveCount(int lruvec) => Volatile.Read(ref _count[2 * lruvec + Inactive]);

    /// <summary>Frames on the active list of <paramref name="lruvec"/> now.</summary>
    public long ActiveCount(int lruvec) => Volatile.Read(ref _count[2 * lruvec + Active]);

    /// <summary>
    /// <c>folio_add_lru</c>: puts a frame that is on no list at the head of one (a new anonymous page goes to the
    /// inactive list, as the kernel's do since 5.9). Does nothing for a frame already on a list.
    /// </summary>
    public void Add(long pfn, bool active)
    {
        SpinWord.Enter(ref _lock);
        if (!_memory.HasFlags(pfn, FrameFlags.Lru))
        {
            Link((int)pfn, active);
        }
        SpinWord.Exit(ref _lock);
    }

    /// <summary>Takes a frame off its list (its last reference is gone). Does nothing if it is on none.</summary>
    public void Remove(long pfn)
    {
        SpinWord.Enter(ref _lock);
        if (_memory.HasFlags(pfn, FrameFlags.Lru))
        {
            Unlink((int)pfn);
        }
        SpinWord.Exit(ref _lock);
    }

    /// <summary>
    /// <c>isolate_lru_folios</c>: takes up to <paramref name="into"/>.Length frames from the tail of the active or
    /// inactive list of <paramref name="lruvec"/>, each with a reference the caller drops (<see cref="Putback"/> does). Frames being freed (no
    /// reference left) are skipped and stay for their freer. Returns how many were isolated; <paramref name="scanned"/>
    /// counts the frames looked at.
    /// </summary>
    public int Isolate(int lruvec, bool active, Span<int> into, out int scanned)
    {
        int list = 2 * lruvec + (active ? Active : Inactive);
        int n = 0;
        scanned = 0;
        SpinWord.Enter(ref _lock);
        int pfn = _prev[_head + list];
        while (n < into.Length && pfn != _head + list && scanned < into.Length * 4)
        {
            int previous = _prev[pfn];
            scanned++;
            if (_memory.TryGet(pfn))
            {
                Unlink(pfn);
                into[n++] = pfn;
            }
            pfn = previous;
        }
        SpinWord.Exit(ref _lock);
        return n;
    }

    /// <summary>
    /// <c>folio_putback_lru</c>: an isolated frame goes back to the head of a list (or to none if it was freed meanwhile:
    /// only the caller's reference keeps it), and the isolation's reference is dropped.
    /// </summary>
    public void Putback(long pfn, bool active)
    {
        Add(pfn, active);
        _memory.Put(pfn);
    }

    /// <summary>
    /// <c>folio_isolate_lru</c> of one frame the caller holds a reference to: off its list with a second reference
    /// (dropped by <see cref="Putback"/> or by whoever frees it). False when it is on no list (isolated elsewhere).
    /// </summary>
    public bool TryIsolate(long pfn)
    {
        SpinWord.Enter(ref _lock);
        bool isolated = _memory.HasFlags(pfn, FrameFlags.Lru);
        if (isolated)
        {
            _memory.Get(pfn);
            Unlink((int)pfn);
        }
        SpinWord.Exit(ref _lock);
        return isolated;
    }

    /// <summary>
    /// <c>deactivate_file_folio</c>/<c>lru_deactivate</c> (MADV_COLD): moves a frame on the active list to the inactive
    /// one's head. Does nothing for a frame on no list.
    /// </summary>
    public void Deactivate(long pfn)
    {
        SpinWord.Enter(ref _lock);
        if (_memory.HasFlags(pfn, FrameFlags.Lru | FrameFlags.Active))
        {
            Unlink((int)pfn);
            Link((int)pfn, active: false);
        }
        SpinWord.Exit(ref _lock);
    }

    // Under the lock: the frame goes to the head of its group's active or inactive list and takes the list's flags.
    private void Link(int pfn, bool active)
    {
        int list = ListOf(pfn, active);
        int head = _head + list;
        int first = _next[head];
        _next[pfn] = first;
        _prev[pfn] = head;
        _prev[first] = pfn;
        _next[head] = pfn;
        _count[list]++;
        _total++;
        _memory.SetFlags(pfn, active ? FrameFlags.Lru | FrameFlags.Active : FrameFlags.Lru);
        if (!active)
        {
            _memory.ClearFlags(pfn, FrameFlags.Active);
        }
    }

    // Under the lock: the frame leaves its list and loses the LRU flag (Active stays: it says where it goes back).
    private void Unlink(int pfn)
    {
        int list = ListOf(pfn, _memory.HasFlags(pfn, FrameFlags.Active));
        _next[_prev[pfn]] = _next[pfn];
        _prev[_next[pfn]] = _prev[pfn];
        _count[list]--;
        _total--;
        _memory.ClearFlags(pfn, FrameFlags.Lru);
    }

    // The list a frame belongs on: its charge never changes while it is allocated, so Link and Unlink agree.
    private int ListOf(int pfn, bool active) => 2 * (_memory.Info(pfn).Charge?.Lruvec ?? 0) + (active ? Active : Inactive);
}
