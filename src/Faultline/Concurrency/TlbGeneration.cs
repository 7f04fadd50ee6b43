namespace Faultline.Concurrency;

/// <summary>
/// The address space's TLB generation (the kernel's <c>mm->context.tlb_gen</c>). Every change that removes or
/// narrows a translation bumps it; a Cpu compares its own copy on entry to each access and flushes its software
/// TLB when it moved (the shootdown).
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

    /// <summary>The current generation: an acquire read, paired with the full fence of <see cref="Bump"/>.</summary>
    public long Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref *_generation);
    }

    /// <summary>Invalidates every Cpu's cached translations. A full fence: the cleared PTEs are visible before it.</summary>
    public long Bump() => Interlocked.Increment(ref *_generation);
}
