using Faultline.Areas;
using Faultline.Paging;

namespace Faultline.Faults;

/// <summary>
/// <c>vma_has_changed</c>: the VMA was detached, or its sequence differs from the one the speculative fault
/// recorded. The read barrier keeps the caller's earlier loads (the PTE, the PMD) before these re-reads; the
/// writer's full-fence <c>write_seqcount_begin</c> and detach pair with it.
/// </summary>
internal readonly struct VmaChangeCheck : ISpeculativeCheck
{
    private readonly Vma _vma;
    private readonly int _sequence;

    /// <summary>Checks <paramref name="vma"/> against <paramref name="sequence"/>.</summary>
    public VmaChangeCheck(Vma vma, int sequence)
    {
        _vma = vma;
        _sequence = sequence;
    }

    /// <inheritdoc />
    public bool HasChanged()
    {
        Volatile.ReadBarrier();
        return _vma.IsDetached || _vma.Sequence.ReadRaw() != _sequence;
    }
}
