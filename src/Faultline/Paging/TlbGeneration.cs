namespace Faultline.Paging;

/// <summary>
/// The address space's TLB generation (the kernel's <c>mm->context.tlb_gen</c>). Every change that removes or
/// narrows a translation bumps it; a Cpu compares its own copy on entry to each access and flushes its software
/// TLB when it moved (the shootdown).
/// </summary>
internal sealed class TlbGeneration
{
    private long _generation;

    /// <summary>The current generation: an acquire read, paired with the full fence of <see cref="Bump"/>.</summary>
    public long Current
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _generation);
    }

    /// <summary>Invalidates every Cpu's cached translations. A full fence: the cleared PTEs are visible before it.</summary>
    public long Bump() => Interlocked.Increment(ref _generation);
}
