using Faultline.Areas;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Mm;

/// <summary>
/// <c>khugepaged</c>: a background thread that, once every scan period, looks through the address space for 2 MiB
/// blocks of huge-eligible anonymous VMAs still mapped by a PTE table and collapses them
/// (<see cref="HugePageCollapse.CollapseBlock"/>) with the sysfs defaults <c>max_ptes_none</c> 511 and
/// <c>max_ptes_shared</c> 256.
/// </summary>
/// <remarks>
/// As <c>khugepaged_scan_mm_slot</c> does, it finds candidates under the mmap read lock and collapses each under the
/// mmap write lock after finding its VMA again (<c>hugepage_vma_revalidate</c>), so faults wait at most for one block.
/// Unlike the kernel it scans the whole address space each period rather than <c>pages_to_scan</c> pages.
/// Thread-safety: <see cref="Stop"/> may be called from any thread, once; it waits for the thread to end, so call it
/// before the address space is torn down.
/// </remarks>
internal sealed class Khugepaged
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;
    private readonly TimeSpan _period;
    private readonly Thread _thread;
    private readonly ManualResetEventSlim _stop = new();
    private readonly List<ulong> _candidates = [];
    private long _fullScans;

    /// <summary>Starts the thread over <paramref name="mm"/>, scanning every <paramref name="period"/>.</summary>
    public Khugepaged(MemoryDescriptor mm, object owner, TimeSpan period)
    {
        _mm = mm;
        _owner = owner;
        _period = period;
        _thread = new Thread(Run) { IsBackground = true, Name = "faultline-khugepaged" };
        _thread.Start();
    }

    /// <summary>Passes over the whole address space so far (<c>khugepaged/full_scans</c>).</summary>
    public long FullScans => Interlocked.Read(ref _fullScans);

    /// <summary>Ends the thread and waits for it (a collapse in progress finishes first).</summary>
    public void Stop()
    {
        _stop.Set();
        _thread.Join();
        _stop.Dispose();
    }

    private void Run()
    {
        while (!_stop.Wait(_period))
        {
            if (_mm.IsExiting)
            {
                return;
            }
            try
            {
                Scan();
            }
            catch (ObjectDisposedException)
            {
                return; // the address space is being torn down
            }
            Interlocked.Increment(ref _fullScans);
        }
    }

    private void Scan()
    {
        TransparentHugePageMode mode = _mm.Settings.TransparentHugePages;
        _candidates.Clear();
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            Vma? vma = _mm.Tree.FindFirstEndingAbove(0);
            while (vma is not null)
            {
                ulong block = (vma.Start + PageGeometry.PmdSize - 1) & ~(PageGeometry.PmdSize - 1);
                for (; block >= vma.Start && block < vma.End; block += PageGeometry.PmdSize)
                {
                    if (HugePageCollapse.IsEligible(vma, mode, block) && HoldsPteTable(block))
                    {
                        _candidates.Add(block);
                    }
                }
                vma = _mm.Tree.FindFirstEndingAbove(vma.End);
            }
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
        var frames = new FrameCache(_mm.Memory);
        foreach (ulong block in _candidates)
        {
            if (_stop.IsSet)
            {
                break;
            }
            _mm.EnterWriteUnlessExiting(_owner);
            try
            {
                // hugepage_vma_revalidate: the VMA may have changed while no lock was held.
                Vma? vma = _mm.Tree.FindFirstEndingAbove(block);
                if (vma is not null && vma.Start <= block && HugePageCollapse.IsEligible(vma, _mm.Settings.TransparentHugePages, block))
                {
                    HugePageCollapse.CollapseBlock(_mm, vma, block, frames, HugePageCollapse.DefaultMaxPtesNone,
                        HugePageCollapse.DefaultMaxPtesShared);
                }
            }
            finally
            {
                frames.DrainAll();
                _mm.MmapLock.ExitWrite();
            }
        }
    }

    // A PTE table (not an empty or huge PMD) maps the block; the caller holds the mmap lock.
    private bool HoldsPteTable(ulong block)
    {
        if (_mm.PageTable.FindPmdSlot(block, out long pmdTable, out int pmdIndex) != 0)
        {
            return false;
        }
        ulong pmd = _mm.PageTable.ReadPmdSlot(pmdTable, pmdIndex);
        return pmd != 0 && (pmd & Pte.Huge) == 0;
    }
}
