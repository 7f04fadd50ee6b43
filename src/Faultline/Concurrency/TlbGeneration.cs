namespace Faultline.Concurrency;

/// <summary>
/// The address space's TLB generation (the kernel's <c>mm->context.tlb_gen</c>). Every change that removes or
/// narrows a translation bumps it; a Cpu compares its own copy on entry to each access and flushes its software
/// TLB when it moved (the shootdown). Each bump records the page range it invalidates in a small history, so a Cpu
/// that missed only a few small bumps invalidates those pages instead of flushing everything (the kernel's
/// <c>flush_tlb_mm_range</c> with its full-flush ceiling).
/// </summary>
internal sealed unsafe class TlbGeneration
{
    // Pinned, padded storage so every Cpu reads the value through a raw pointer, on a line writers rarely touch.
    private readonly long[] _storage = GC.AllocateArray<long>(24, pinned: true);
    private readonly long* _generation;

    /// <summary>Creates generation 0.</summary>
    public TlbGeneration()
    {
        fixed (long* p = &_storage[8])
        {
            _generation = p;
        }
    }

    /// <summary>Where the generation lives, for the Cpu's inlined fast path (read it with an acquire load).</summary>
    public long* Address => _generation;

    /// <summary>The current generation: an acquire read, paired with the full fence of <see cref="Bump()"/>.</summary>
    public long Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref *_generation);
    }

    /// <summary>Invalidates every Cpu's cached translations. A full fence: the cleared PTEs are visible before it.</summary>
    public long Bump() => Bump(0, ulong.MaxValue);

    /// <summary>
    /// Invalidates cached translations of pages [<paramref name="startPage"/>, <paramref name="endPage"/>) (page
    /// numbers); returns the new generation. The history record is written after the bump, so a Cpu that sees the new
    /// generation before its record finds no valid record and flushes everything — never too little.
    /// </summary>
    public long Bump(ulong startPage, ulong endPage)
    {
        long generation = Interlocked.Increment(ref *_generation);
        int slot = (int)(generation & (HistorySize - 1));
        SpinWord.Enter(ref _historyLock);
        // A seqlock per slot, writers serialised by the lock: the stamp is cleared (full fence) before the range
        // changes and set (release) after, and readers re-check it after reading the range.
        Interlocked.Exchange(ref _stamps[slot], 0);
        _starts[slot] = startPage;
        _ends[slot] = endPage;
        Volatile.Write(ref _stamps[slot], generation);
        SpinWord.Exit(ref _historyLock);
        return generation;
    }

    /// <summary>Bumps the history keeps, a power of two.</summary>
    public const int HistorySize = 64;

    private readonly long[] _stamps = new long[HistorySize];
    private readonly ulong[] _starts = new ulong[HistorySize];
    private readonly ulong[] _ends = new ulong[HistorySize];
    private int _historyLock;

    /// <summary>The page range bump <paramref name="generation"/> invalidated, or false if its record is gone or not yet written.</summary>
    public bool TryGetRange(long generation, out ulong startPage, out ulong endPage)
    {
        int slot = (int)(generation & (HistorySize - 1));
        startPage = endPage = 0;
        if (Volatile.Read(ref _stamps[slot]) != generation)
        {
            return false;
        }
        startPage = Volatile.Read(ref _starts[slot]);
        endPage = Volatile.Read(ref _ends[slot]);
        Volatile.ReadBarrier();
        return Volatile.Read(ref _stamps[slot]) == generation;
    }
}
