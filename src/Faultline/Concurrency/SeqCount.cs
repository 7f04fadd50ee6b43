namespace Faultline.Concurrency;

/// <summary>
/// A sequence counter (the kernel's <c>seqcount_t</c>, used as the SPF <c>vm_sequence</c>): odd while a
/// writer changes the protected data, even otherwise. Writers are serialised externally (by the mmap lock);
/// readers never block, they snapshot the count and re-validate it after reading.
/// </summary>
internal struct SeqCount
{
    private int _sequence;

    /// <summary>The raw count (<c>raw_read_seqcount</c>): an acquire read, so data read after it is not older than it.</summary>
    public readonly int ReadRaw() => Volatile.Read(in _sequence);

    /// <summary>
    /// <c>read_seqcount_retry</c>: true when the count moved since <paramref name="start"/>. The read barrier
    /// keeps the caller's data loads before this re-read (smp_rmb); pairs with the full fence of <see cref="BeginWrite"/>.
    /// </summary>
    public readonly bool Retry(int start)
    {
        Volatile.ReadBarrier();
        return Volatile.Read(in _sequence) != start;
    }

    /// <summary>
    /// <c>write_seqcount_begin</c>: makes the count odd. Interlocked is a full fence, so the odd value is visible
    /// before any store to the protected data (the smp_wmb after the increment).
    /// </summary>
    public void BeginWrite() => Interlocked.Increment(ref _sequence);

    /// <summary>
    /// <c>write_seqcount_end</c>: makes the count even with a release store, so every store to the data is
    /// visible before the even value a reader validates against.
    /// </summary>
    public void EndWrite() => Volatile.Write(ref _sequence, _sequence + 1);

    /// <summary>True while a write section is open.</summary>
    public readonly bool IsWriting => (ReadRaw() & 1) != 0;
}
