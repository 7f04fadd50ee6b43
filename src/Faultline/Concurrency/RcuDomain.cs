namespace Faultline.Concurrency;

/// <summary>
/// The grace-period domain of one address space's Cpus (the kernel's RCU as used by <c>MMU_GATHER_RCU_TABLE_FREE</c>
/// and the TLB-shootdown IPI). A writer that unhooked a page-table page or a frame calls <see cref="Synchronize"/>:
/// after it returns no reader can still be inside a section that could have seen the old pointer.
/// </summary>
internal sealed class RcuDomain
{
    private readonly object _registry = new();
    private RcuReader[] _readers = [];
    private long _gracePeriods;

    /// <summary>Adds a reader (a Cpu attaching).</summary>
    public void Register(RcuReader reader)
    {
        lock (_registry)
        {
            // Copy-on-write publication: writers scanning the old array missed a reader that was not yet inside.
            Volatile.Write(ref _readers, [.. _readers, reader]);
        }
    }

    /// <summary>Removes a reader (a Cpu detaching); it must be outside any section.</summary>
    public void Unregister(RcuReader reader)
    {
        Debug.Assert(!reader.IsInside);
        lock (_registry)
        {
            Volatile.Write(ref _readers, Array.FindAll(_readers, r => r != reader));
        }
    }

    /// <summary>Grace periods completed, for diagnostics.</summary>
    public long GracePeriods => Interlocked.Read(ref _gracePeriods);

    /// <summary>
    /// <c>synchronize_rcu</c>: a process-wide barrier, then waits for each reader that was inside a section to leave
    /// it. Must not be called from inside a section of this domain.
    /// </summary>
    public void Synchronize()
    {
        // Pairs with the fence-free store in RcuReader.Enter: after this, a reader either shows as inside (odd)
        // or will see every store this writer made before calling.
        Interlocked.MemoryBarrierProcessWide();
        RcuReader[] readers = Volatile.Read(ref _readers);
        foreach (RcuReader reader in readers)
        {
            long seen = reader.ReadCounter();
            if ((seen & 1) == 0)
            {
                continue;
            }
            var spinner = new SpinWait();
            while (reader.ReadCounter() == seen)
            {
                spinner.SpinOnce();
            }
        }
        Interlocked.Increment(ref _gracePeriods);
    }
}
