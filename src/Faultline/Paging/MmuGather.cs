using Faultline.Concurrency;
using Faultline.Physical;

namespace Faultline.Paging;

/// <summary>
/// Batches what an unmap tears down (the kernel's <c>mmu_gather</c>): frames whose last mapping went away and
/// page-table pages that were unhooked. Nothing is freed until every Cpu's TLB generation moved and a grace
/// period passed, so no Cpu can still hold a translation to, or be walking, what is freed.
/// </summary>
internal sealed class MmuGather
{
    /// <summary>
    /// Default frames gathered before a forced flush. The kernel grows its batch list until it cannot allocate another
    /// batch page (<c>MAX_GATHER_BATCH_COUNT</c>), so an unmap normally flushes once; a forced flush (under the PTE lock)
    /// is the exception. 64 Ki frames is 256 MiB unmapped per flush.
    /// </summary>
    public const int DefaultBatchLimit = 1 << 16;

    private readonly int _batchLimit;

    private readonly PhysicalMemory _memory;
    private readonly RcuDomain _rcu;
    private readonly List<int> _frames = [];
    private readonly List<int> _tables = [];
    private bool _needsFlush;
    private ulong _firstPage = ulong.MaxValue;
    private ulong _endPage;

    /// <summary>Starts a gather (<c>tlb_gather_mmu</c>).</summary>
    public MmuGather(PhysicalMemory memory, RcuDomain rcu, int batchLimit = DefaultBatchLimit)
    {
        _memory = memory;
        _rcu = rcu;
        _batchLimit = batchLimit;
    }

    /// <summary>Frames waiting to be freed.</summary>
    public int PendingFrames => _frames.Count;

    /// <summary>True when the batch is full and the caller should flush (<c>__tlb_remove_page</c> returning true).</summary>
    public bool IsFull => _frames.Count >= _batchLimit;

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

    /// <summary>Drops one mapping of a frame (<c>tlb_remove_page</c>); the frame is freed at flush if unreferenced.</summary>
    public void RemoveMapping(long pfn)
    {
        ref FrameInfo info = ref _memory.Info(pfn);
        Interlocked.Decrement(ref info.MapCount);
        _needsFlush = true;
        if (Interlocked.Decrement(ref info.RefCount) == 0)
        {
            _frames.Add((int)pfn);
        }
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
            _rcu.Synchronize(_firstPage, _endPage);
        }
        else
        {
            _rcu.Synchronize();
        }
        _needsFlush = false;
        _firstPage = ulong.MaxValue;
        _endPage = 0;
    }

    /// <summary>
    /// <c>tlb_finish_mmu</c>: hands everything gathered to the grace-period domain as one deferred batch free
    /// (<c>tlb_remove_table</c>'s <c>call_rcu</c>), then flushes; the batch is freed once the grace period ends.
    /// </summary>
    public void Finish(ProbeSet probes)
    {
        if (_frames.Count + _tables.Count > 0)
        {
            int[] batch = [.. _frames, .. _tables];
            _frames.Clear();
            _tables.Clear();
            PhysicalMemory memory = _memory;
            _rcu.Defer(() => memory.FreeBatch(batch));
            _needsFlush = true;
        }
        FlushTlb(probes);
    }

    /// <summary>Frees what was gathered, right after a forced <see cref="FlushTlb"/> (once the PTE lock is dropped).</summary>
    public void FreeGathered()
    {
        Debug.Assert(!_needsFlush, "free before the TLB flush");
        if (_frames.Count > 0)
        {
            _memory.FreeBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_frames));
            _frames.Clear();
        }
        if (_tables.Count > 0)
        {
            _memory.FreeBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tables));
            _tables.Clear();
        }
    }
}
