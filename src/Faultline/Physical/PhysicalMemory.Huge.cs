namespace Faultline.Physical;

/// <summary>
/// Huge (order-9) frames for transparent huge pages: 512 contiguous frames whose first pfn is a multiple of 512, so one
/// PMD entry can map them as a 2 MiB page.
/// </summary>
/// <remarks>
/// <para>
/// Not a buddy allocator but its two orders that THP needs: 4 KiB frames stay on the free stack, and free huge blocks
/// sit whole on a stack of their own. A huge allocation takes a free block, or carves the next aligned block from the
/// never-touched part of the arena (the frames skipped to reach the alignment join the 4 KiB free stack). A 4 KiB
/// allocation breaks up a free huge block only when no 4 KiB frame is left, as the kernel falls back to a higher order
/// only when order 0 is empty. Why not buddy: the 4 KiB path is a lock-held pop that the fault benchmarks measure, and
/// buddy coalescing would put a merge walk on every free; a separate pool keeps that path unchanged.
/// </para>
/// <para>
/// No compaction: 4 KiB frames freed one by one never merge back into a huge block, so once the untouched part and the
/// huge stack are used up, <see cref="TryAllocateHuge"/> fails and the caller falls back to 4 KiB pages (the kernel's
/// <c>defrag</c> setting <c>never</c>). Freeing a huge block with <see cref="FreeHuge"/> keeps it whole, available to
/// both sizes.
/// </para>
/// <para>
/// Zeroing: like <see cref="AllocateBatch"/>, a huge block comes back with undefined contents and per-frame
/// <see cref="FrameInfo.Zeroed"/> marks; the caller clears it with <see cref="PrepareZeroedHuge"/> (<c>clear_huge_page</c>),
/// which skips frames already zero (fresh ones). The background zeroer does not clear huge blocks.
/// </para>
/// <para>
/// References: the head frame (<see cref="FrameFlags.HugeHead"/>) holds the block's count; tail frames
/// (<see cref="FrameFlags.HugeTail"/>) have none. Drop the last reference with <see cref="PutHuge"/> or
/// <see cref="FreeHuge"/>, never with <see cref="Put"/>, which frees a single frame. Thread-safe: all stacks are under
/// the allocator's lock.
/// </para>
/// </remarks>
internal sealed unsafe partial class PhysicalMemory
{
    /// <summary><c>HPAGE_PMD_ORDER</c>: log2 of the frames in a huge block.</summary>
    public const int HugeOrder = PageGeometry.PmdShift - PageGeometry.PageShift;
    /// <summary><c>HPAGE_PMD_NR</c>: frames in a huge block.</summary>
    public const int HugeFrames = 1 << HugeOrder;

    private readonly int[] _hugeStack; // first pfns of free huge blocks (guarded by _lock)
    private int _hugeCount;

    /// <summary>Free huge blocks kept whole (not counting what the untouched part of the arena could still yield).</summary>
    public int FreeHugeBlocks => Volatile.Read(ref _hugeCount);

    /// <summary>
    /// Allocates a huge block: <see cref="HugeFrames"/> contiguous frames from <paramref name="firstPfn"/>, a multiple
    /// of <see cref="HugeFrames"/>; the head holds one reference. False, with nothing changed, when no whole aligned
    /// block is free (no compaction is tried): the caller falls back to 4 KiB frames.
    /// </summary>
    public bool TryAllocateHuge(out long firstPfn)
    {
        int first;
        Concurrency.SpinWord.Enter(ref _lock);
        if (_hugeCount > 0)
        {
            first = _hugeStack[--_hugeCount];
        }
        else
        {
            int aligned = (_nextUntouched + HugeFrames - 1) & ~(HugeFrames - 1);
            if (aligned > FrameCount - HugeFrames)
            {
                Concurrency.SpinWord.Exit(ref _lock);
                firstPfn = NoFrame;
                return false;
            }
            // The untouched frames below the alignment stay untouched (zero) on the 4 KiB stack.
            for (int pfn = _nextUntouched; pfn < aligned; pfn++)
            {
                _freeStack[_freeCount++] = pfn;
            }
            _nextUntouched = aligned + HugeFrames;
            first = aligned;
        }
        Concurrency.SpinWord.Exit(ref _lock);
        for (int pfn = first; pfn < first + HugeFrames; pfn++)
        {
            ref FrameInfo info = ref _frames[pfn];
            Debug.Assert(info.Kind == FrameKind.Free && info.RefCount == 0);
            info.Kind = FrameKind.Allocated;
            info.RefCount = pfn == first ? 1 : 0;
            info.MapCount = 0;
            info.Flags = (int)(pfn == first ? FrameFlags.HugeHead : FrameFlags.HugeTail);
        }
        Interlocked.Add(ref _framesInUse, HugeFrames);
        firstPfn = first;
        return true;
    }

    /// <summary>
    /// Returns a huge block to the huge free stack, whole. The caller owns the last reference and guarantees no Cpu can
    /// reach any of its frames (as for <see cref="FreeBatch"/>).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="firstPfn"/> is not the head of an allocated huge block.</exception>
    public void FreeHuge(long firstPfn)
    {
        if (firstPfn <= 0 || firstPfn >= FrameCount || (firstPfn & (HugeFrames - 1)) != 0
            || _frames[firstPfn].Kind == FrameKind.Free || (_frames[firstPfn].Flags & (int)FrameFlags.HugeHead) == 0)
        {
            throw new ArgumentException("not the head of an allocated huge block", nameof(firstPfn));
        }
        for (long pfn = firstPfn; pfn < firstPfn + HugeFrames; pfn++)
        {
            ref FrameInfo info = ref _frames[pfn];
            Debug.Assert(info.PinCount == 0, "a pinned frame freed");
            info.Kind = FrameKind.Free;
            info.RefCount = 0;
            info.MapCount = 0;
            info.PteLock = 0;
            info.Flags = 0;
            info.Mapping = null;
            info.Index = 0;
            if (PoisonFreedFrames)
            {
                new Span<byte>(FrameAddress(pfn), FrameSize).Fill(PoisonByte);
                info.Zeroed = false;
            }
        }
        Concurrency.SpinWord.Enter(ref _lock);
        _hugeStack[_hugeCount++] = (int)firstPfn;
        Concurrency.SpinWord.Exit(ref _lock);
        Interlocked.Add(ref _framesInUse, -HugeFrames);
    }

    /// <summary><c>folio_put</c> on a huge block: drops a reference on its head, freeing the whole block on the last; see <see cref="Put"/>.</summary>
    public void PutHuge(long firstPfn)
    {
        // Full fence, as in Put.
        if (Interlocked.Decrement(ref _frames[firstPfn].RefCount) == 0)
        {
            FreeHuge(firstPfn);
        }
    }

    /// <summary>
    /// <c>clear_huge_page</c>: makes an allocated huge block's contents zero before its first use, clearing only the
    /// frames not known to be zero, and marks them as about to be written.
    /// </summary>
    public void PrepareZeroedHuge(long firstPfn)
    {
        for (long pfn = firstPfn; pfn < firstPfn + HugeFrames; pfn++)
        {
            PrepareZeroed(pfn);
        }
    }

    // Under _lock, with a free huge block: its frames join the 4 KiB free stack, lowest on top.
    private void SplitFreeHugeBlock()
    {
        int first = _hugeStack[--_hugeCount];
        for (int pfn = first + HugeFrames - 1; pfn >= first; pfn--)
        {
            _freeStack[_freeCount++] = pfn;
        }
    }
}
