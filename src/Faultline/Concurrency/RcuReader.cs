using System.Runtime.InteropServices;

namespace Faultline.Concurrency;

/// <summary>
/// One reader of an <see cref="RcuDomain"/>: the read-side state of a <c>Cpu</c> (the kernel's IRQ-off or
/// <c>rcu_read_lock</c> section that keeps page-table pages and frames alive during a lockless walk).
/// Entering and leaving cost one store to a cache line this reader owns; no fence (the writer pays with a
/// process-wide barrier). Sections do not nest: a Cpu's accesses and its fault paths enter them one after another.
/// </summary>
internal sealed class RcuReader
{
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private struct PaddedCounter
    {
        // Alone on its cache line so writers polling it do not disturb neighbours.
        [FieldOffset(64)] public long Value;
    }

    private PaddedCounter _counter; // odd while inside a section

    /// <summary>Enters a read section (<c>rcu_read_lock</c>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
        Debug.Assert((_counter.Value & 1) == 0, "nested read section");
        // Only this reader writes the counter. The store needs no fence: a writer's MemoryBarrierProcessWide
        // either makes it visible to the writer's scan, or makes the writer's earlier stores (cleared PTEs,
        // TLB generation) visible to this section's loads.
        Volatile.Write(ref _counter.Value, _counter.Value + 1);
    }

    /// <summary>Leaves a read section (<c>rcu_read_unlock</c>): release, so the section's loads complete first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit()
    {
        Debug.Assert((_counter.Value & 1) == 1, "unbalanced read section");
        Volatile.Write(ref _counter.Value, _counter.Value + 1);
    }

    /// <summary>True while inside a section.</summary>
    public bool IsInside => (_counter.Value & 1) == 1;

    /// <summary>The published counter, read by writers.</summary>
    internal long ReadCounter() => Volatile.Read(ref _counter.Value);
}
