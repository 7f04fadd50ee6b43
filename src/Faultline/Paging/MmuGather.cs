using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// Batches what an unmap tears down (the kernel's <c>mmu_gather</c>): the references of frames whose mappings went
/// away and page-table pages that were unhooked. Nothing is released until every Cpu's TLB generation moved and a
/// grace period passed, so no Cpu can still hold a translation to, or be walking, what is released.
/// </summary>
/// <remarks>
/// The map count drops at zap time (rmap removal), but the mapping's reference is held by the gather and dropped
/// (<c>put_page</c>) only after the flush. Frames may be mapped by several address spaces, each with its own
/// grace-period domain: were the reference dropped at zap, space A could drop 2→1 while its Cpus still use the frame,
/// and space B drop 1→0 and free it after B's grace period only. Dropping after the flush makes every reference
/// outlive the translations it backs, so whichever put reaches zero frees a frame no TLB of any space maps.
/// </remarks>
internal sealed class MmuGather
{
    /// <summary>
    /// Default frames gathered before a forced flush. The kernel grows its batch list until it cannot allocate another
    /// batch page (<c>MAX_GATHER_BATCH_COUNT</c>), so an unmap normally flushes once; a forced flush (under the PTE lock)
    /// is the exception. 64 Ki frames is 256 MiB unmapped per flush.
    /// </summary>
    public const int DefaultBatchLimit = 1 << 16;

    private readonly PhysicalMemory _memory;
    private readonly RcuDomain _rcu;
    private readonly RcuReader? _caller;
    private List<int> _frames = [];
    private List<int> _tables = [];
    // The release object of the last finish, back from its grace period (or null while one is still pending): taken
    // with an exchange in Finish, put back with a release store by GatherRelease after it ran on any thread.
    private GatherRelease? _spare;
    private bool _needsFlush;
    private ulong _firstPage = ulong.MaxValue;
    private ulong _endPage;

    /// <summary>
    /// Starts a gather (<c>tlb_gather_mmu</c>). <paramref name="caller"/>: the read section of the Cpu running this
    /// gather, outside its section for the whole gather (a fault), which the flush need not wait for.
    /// </summary>
    public MmuGather(PhysicalMemory memory, RcuDomain rcu, int batchLimit = DefaultBatchLimit, RcuReader? caller = null)
    {
        _memory = memory;
        _rcu = rcu;
        BatchLimit = batchLimit;
        _caller = caller;
    }

    /// <summary>Frames gathered before <see cref="IsFull"/> asks for a forced flush; set when a pooled gather is reused.</summary>
    public int BatchLimit { get; set; }

    /// <summary>True when nothing is gathered and no flush is owed: the gather may be reused.</summary>
    public bool IsEmpty => _frames.Count == 0 && _tables.Count == 0 && !_needsFlush;

    /// <summary>Frame references waiting to be dropped.</summary>
    public int PendingFrames => _frames.Count;

    /// <summary>Shared-memory (<see cref="FrameKind.Shmem"/>) mappings removed so far: the caller's <c>MM_SHMEMPAGES</c> drop.</summary>
    public long ShmemPagesUnmapped { get; private set; }

    /// <summary>Readies a pooled gather for its next user: the batch limit it flushes at, and its counts from zero.</summary>
    public void Reuse(int batchLimit)
    {
        Debug.Assert(IsEmpty, "a gather reused with work left");
        BatchLimit = batchLimit;
        ShmemPagesUnmapped = 0;
    }

    /// <summary>True when the batch is full and the caller should flush (<c>__tlb_remove_page</c> returning true).</summary>
    public bool IsFull => _frames.Count >= BatchLimit;

    /// <summary>
    /// The translation of the page at <paramref name="address"/> was removed or narrowed: the TLBs must be flushed
    /// (for the range covering every such page) before the operation ends.
    /// </summary>
    public void NoteTranslationChange(ulong address)
    {
        _needsFlush = true;
        ulong page = address >> PageGeometry.PageShift;
        _firstPage = Math.Min(_firstPage, page);
        _endPage = Math.Max(_endPage, page + 1);
    }

    /// <summary>
    /// Drops one mapping of a frame (<c>tlb_remove_page</c>): the map count now, the mapping's reference after the
    /// flush. Returns true for an anonymous frame (the caller's <c>MM_ANONPAGES</c> count).
    /// </summary>
    public bool RemoveMapping(long pfn)
    {
        ref FrameInfo info = ref _memory.Info(pfn);
        // Full fence; pairs with the acquire read of the map count in PhysicalMemory.IsExclusiveAnonymous.
        Interlocked.Decrement(ref info.MapCount);
        _needsFlush = true;
        _frames.Add((int)pfn);
        if (info.Kind == FrameKind.Shmem)
        {
            ShmemPagesUnmapped++;
        }
        return info.Kind == FrameKind.Anonymous;
    }

    /// <summary>Queues an unhooked page-table page (<c>tlb_remove_table</c>).</summary>
    public void RemoveTable(long pfn)
    {
        _tables.Add((int)pfn);
        _needsFlush = true;
    }

    /// <summary>
    /// <c>tlb_flush_mmu_tlbonly</c> plus the IPI wait: a grace period, which bumps the TLB generation. May be
    /// called with a PTE lock held (as the kernel flushes under the PTE lock), which is why a speculative fault
    /// must only trylock that lock inside its read section.
    /// </summary>
    public void FlushTlb(ProbeSet probes)
    {
        if (!_needsFlush)
        {
            return;
        }
        probes.Hit(ProbePoint.GatherBeforeGracePeriod);
        if (_firstPage < _endPage)
        {
            _rcu.Synchronize(_firstPage, _endPage, _caller);
        }
        else
        {
            _rcu.Synchronize(0, ulong.MaxValue, _caller);
        }
        _needsFlush = false;
        _firstPage = ulong.MaxValue;
        _endPage = 0;
    }

    /// <summary>
    /// <c>tlb_finish_mmu</c>: hands everything gathered to the grace-period domain as one deferred batch
    /// (<c>tlb_remove_table</c>'s <c>call_rcu</c>), then flushes; once the grace period ends the references are
    /// dropped (freeing frames that reach zero) and the tables freed.
    /// </summary>
    public void Finish(ProbeSet probes)
    {
        if (_frames.Count + _tables.Count > 0)
        {
            GatherRelease release = Interlocked.Exchange(ref _spare, null) ?? new GatherRelease(this, _memory);
            release.Defer(_rcu, ref _frames, ref _tables);
            _needsFlush = true;
        }
        FlushTlb(probes);
    }

    /// <summary>Takes back a release object that ran (called by <see cref="GatherRelease"/> on any thread).</summary>
    internal void ReturnRelease(GatherRelease release) =>
        // Release: the release's cleared lists are complete before the exchange in Finish can take it.
        Volatile.Write(ref _spare, release);

    /// <summary>
    /// Drops the gathered references and frees the gathered tables, after a <see cref="FlushTlb"/> (a forced flush
    /// calls it once the PTE lock is dropped).
    /// </summary>
    public void FreeGathered()
    {
        Debug.Assert(!_needsFlush, "free before the TLB flush");
        if (_frames.Count > 0)
        {
            _memory.PutBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_frames));
            _frames.Clear();
        }
        if (_tables.Count > 0)
        {
            _memory.FreeBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tables));
            _tables.Clear();
        }
    }
}
