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
/// (<see cref="FrameFlags.HugeTail"/>) have none, and <see cref="Get"/>, <see cref="TryGet"/>, <see cref="Put"/>,
/// <see cref="PutBatch"/> and <see cref="Pin"/> of any frame of the block count on the head (the folio's refcount),
/// so the last put of any of them frees the whole block through <see cref="FreeHuge"/>. Map counts stay per frame
/// (<c>page_mapcount</c>): a huge PMD counts once on each of its 512 frames, so a split changes none of them.
/// Thread-safe: all stacks are under the allocator's lock.
/// </para>
/// <para>
/// A split huge PMD keeps its block whole: the 512 PTEs that replace it hold one reference each on the head, and the
/// block goes back to the huge stack when the last of them goes. Breaking the block into 512 independent frames
/// (<c>split_huge_page</c>) would put them on the 4 KiB stack for good, since nothing here compacts frames back into
/// blocks; the price is that the unmapped part of a partly unmapped block stays allocated until the rest is freed
/// (the kernel's deferred split queue reclaims it; not built here).
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
        ChargeGroup.Uncharge(ref _frames[firstPfn]);
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

    private long _hugeZeroFrame; // 0 until the huge zero page exists (set once with a CAS)

    /// <summary>
    /// The frame whose count stands for <paramref name="pfn"/>'s references: the head of its huge block, or itself.
    /// A plain read of the flags: they are set before the block's frames are published and stay until it is freed.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private long ReferenceHolder(long pfn) =>
        (_frames[pfn].Flags & (int)FrameFlags.HugeTail) != 0 ? pfn & ~(long)(HugeFrames - 1) : pfn;

    /// <summary>True when <paramref name="pfn"/> is the head of an allocated huge block.</summary>
    public bool IsHugeHead(long pfn) => (_frames[pfn].Flags & (int)FrameFlags.HugeHead) != 0;

    /// <summary>True when <paramref name="pfn"/> belongs to an allocated huge block (head or tail).</summary>
    public bool IsHugeFrame(long pfn) => (_frames[pfn].Flags & (int)(FrameFlags.HugeHead | FrameFlags.HugeTail)) != 0;

    // The last reference of a frame or of a huge block went (Put).
    private void FreeUnreferenced(long holder)
    {
        if (IsHugeHead(holder))
        {
            FreeHuge(holder);
        }
        else
        {
            Free((int)holder);
        }
    }

    /// <summary>
    /// <c>wp_can_reuse_anon_folio</c>'s large-folio rule for a frame of a block mapped only by PTEs: the block's
    /// references are exactly its frames' map counts (no pin, no reference without a mapping), so a frame mapped once
    /// is this mapping's alone. A block that a huge PMD still maps counts one reference for 512 map counts and fails,
    /// which only makes the write copy. The caller holds the PTE lock of an entry mapping <paramref name="pfn"/>.
    /// </summary>
    private bool IsSplitBlockUnreferenced(long pfn)
    {
        if ((_frames[pfn].Flags & (int)(FrameFlags.HugeHead | FrameFlags.HugeTail)) == 0)
        {
            return false;
        }
        long head = ReferenceHolder(pfn);
        long mapped = 0;
        for (long i = 0; i < HugeFrames; i++)
        {
            // Acquire reads; pair with the Interlocked map-count updates of faults, zaps and fork.
            mapped += Volatile.Read(ref _frames[head + i].MapCount);
        }
        return mapped == Volatile.Read(ref _frames[head].RefCount);
    }

    /// <summary>
    /// <c>folio_add_new_anon_rmap</c> for a fresh huge block a fault is about to map with one huge PMD: every frame
    /// becomes anonymous, mapped once, exclusive, owned by <paramref name="anonVma"/> at consecutive indices from
    /// <paramref name="firstIndex"/>. Plain stores: the PMD's release store publishes them.
    /// </summary>
    public void SetNewHugeAnonymous(long head, object? anonVma, ulong firstIndex)
    {
        for (long i = 0; i < HugeFrames; i++)
        {
            ref FrameInfo info = ref _frames[head + i];
            info.Kind = FrameKind.Anonymous;
            info.MapCount = 1;
            info.Mapping = anonVma;
            info.Index = firstIndex + (ulong)i;
            info.Flags |= (int)FrameFlags.AnonExclusive;
        }
    }

    /// <summary>
    /// <c>folio_try_dup_anon_rmap_pmd</c> plus <c>folio_get</c>: a second huge PMD (a forked child's) maps the block. One
    /// reference on the head, one map count on every frame, none exclusive. Called under the source PMD's lock.
    /// </summary>
    public void DuplicateHugeMapping(long head)
    {
        // Full fences; pair with the acquire reads in IsExclusiveAnonymous and the decrements of Put and the gather.
        Interlocked.Increment(ref _frames[head].RefCount);
        for (long i = 0; i < HugeFrames; i++)
        {
            Interlocked.Increment(ref _frames[head + i].MapCount);
            ClearFlags(head + i, FrameFlags.AnonExclusive);
        }
    }

    /// <summary>
    /// A huge PMD mapping the block went away: the map count of every frame but the head drops now (the gather's
    /// <c>RemoveMapping</c> of the head drops the head's, and its reference after the flush).
    /// </summary>
    public void RemoveHugeTailMappings(long head)
    {
        for (long i = 1; i < HugeFrames; i++)
        {
            // Full fence; pairs with the acquire read of the map count in IsExclusiveAnonymous.
            Interlocked.Decrement(ref _frames[head + i].MapCount);
        }
    }

    /// <summary>
    /// <c>__split_huge_pmd_locked</c>'s accounting: the huge PMD's one reference becomes the 512 PTEs' references
    /// (<c>folio_ref_add(HPAGE_PMD_NR - 1)</c>), and an exclusive block leaves every frame exclusive
    /// (<c>PageAnonExclusive</c> per subpage). Called under the PMD's lock.
    /// </summary>
    public void SplitHugeMapping(long head)
    {
        // Full fence; pairs with Put's decrement.
        Interlocked.Add(ref _frames[head].RefCount, HugeFrames - 1);
        if (HasFlags(head, FrameFlags.AnonExclusive))
        {
            for (long i = 1; i < HugeFrames; i++)
            {
                SetFlags(head + i, FrameFlags.AnonExclusive);
            }
        }
    }

    /// <summary>
    /// <c>mm_get_huge_zero_folio</c>: the huge zero page, allocated on first use and kept (read-only on the host) until
    /// the arena goes. False, with nothing changed, when no huge block is free; <paramref name="allocated"/> says this
    /// call made it (<c>thp_zero_page_alloc</c>). Thread-safe: racing first users agree on one block, the loser frees
    /// its own.
    /// </summary>
    public bool TryGetHugeZeroFrame(out long head, out bool allocated)
    {
        allocated = false;
        // Acquire; pairs with the CAS that published a block whose frames were cleared and protected before it.
        head = Volatile.Read(ref _hugeZeroFrame);
        if (head != 0)
        {
            return true;
        }
        if (!TryAllocateHuge(out long fresh))
        {
            return false;
        }
        PrepareZeroedHuge(fresh);
        for (long i = 0; i < HugeFrames; i++)
        {
            _frames[fresh + i].Kind = FrameKind.Zero;
        }
        // Full fence: the cleared block is visible before its number (pairs with the acquire read above).
        long winner = Interlocked.CompareExchange(ref _hugeZeroFrame, fresh, 0);
        if (winner != 0)
        {
            for (long i = 0; i < HugeFrames; i++)
            {
                _frames[fresh + i].Kind = FrameKind.Allocated;
            }
            FreeHuge(fresh);
            head = winner;
            return true;
        }
        // Nothing writes to it; the protection makes a stray host write crash loudly, as for the zero frame.
        HostPages.MakeReadOnly(FrameAddress(fresh), (nuint)(HugeFrames * FrameSize));
        head = fresh;
        allocated = true;
        return true;
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
