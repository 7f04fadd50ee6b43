namespace Faultline.Concurrency;

/// <summary>
/// The grace-period domain of one address space's Cpus (the kernel's RCU as used by <c>MMU_GATHER_RCU_TABLE_FREE</c>
/// together with the TLB-shootdown IPI). A writer that unhooked page-table pages or frames, or narrowed a translation,
/// calls <see cref="Synchronize()"/>: it bumps the TLB generation (every Cpu flushes its software TLB on its next
/// access) and returns once no reader can still be inside a section that could have seen the old state.
/// </summary>
internal sealed class RcuDomain
{
    private readonly object _registry = new();
    private readonly object _deferredGate = new();
    private RcuReader[] _readers = [];
    private List<Action> _deferred = [];
    private long _gracePeriods;
    private long _readerWaits;

    /// <summary>Creates the domain over the address space's TLB generation.</summary>
    public RcuDomain(TlbGeneration generation) => Generation = generation;

    /// <summary>The TLB generation every grace period advances.</summary>
    public TlbGeneration Generation { get; }

    /// <summary>Adds a reader (a Cpu attaching).</summary>
    public void Register(RcuReader reader)
    {
        lock (_registry)
        {
            // Copy-on-write publication: writers scanning the old array missed a reader that was not yet inside.
            Volatile.Write(ref _readers, [.. _readers, reader]);
        }
        // Full fence after the publication, pairing with the writer's Interlocked bump before it reads the array (a
        // store-buffering pair): a writer that skips the process-wide barrier because it found no other reader either
        // sees this reader, or this reader's first walk sees everything the writer changed before its bump.
        Interlocked.MemoryBarrier();
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

    /// <summary>Times a grace period found a reader inside an older section and had to wait for it.</summary>
    public long ReaderWaits => Interlocked.Read(ref _readerWaits);

    /// <summary>
    /// <c>synchronize_rcu</c> plus the shootdown: bumps the generation to <c>G</c>, issues a process-wide barrier, then
    /// waits for each reader that shows "inside, generation &lt; G" to publish anything else. Must not be called from
    /// inside a section of this domain.
    /// </summary>
    /// <remarks>
    /// Ordering: the writer's changes precede the Interlocked bump. The barrier forces every reader thread through a
    /// full fence, so a reader's "inside" store is either visible to the scan below, or was made after the barrier, in
    /// which case that section's loads (after its acquire read of the generation) see the bump and everything before
    /// it. A reader showing "inside" with a generation of at least G read G or later before its section began, so it
    /// too sees every change and need not be waited for.
    /// </remarks>
    public void Synchronize() => Synchronize(0, ulong.MaxValue);

    /// <summary>
    /// <see cref="Synchronize()"/> for changes confined to pages [<paramref name="startPage"/>, <paramref name="endPage"/>).
    /// <paramref name="caller"/>: the calling Cpu's reader, outside its section (a fault); when it is the only reader,
    /// nobody else can hold a translation, so the process-wide barrier and the wait are skipped (a single-threaded
    /// guest's copy-on-write faults then cost no IPI-like barrier, as the kernel flushes only CPUs in the mm's cpumask).
    /// </summary>
    public void Synchronize(ulong startPage, ulong endPage, RcuReader? caller = null)
    {
        Debug.Assert(caller is null || !caller.IsInside, "the caller's own section is open");
        long target;
        List<Action> due;
        lock (_deferredGate)
        {
            // Callbacks queued before the bump (the lock orders them) belong to this grace period.
            target = Generation.Bump(startPage, endPage);
            due = _deferred;
            _deferred = [];
        }
        RcuReader[] readers = Volatile.Read(ref _readers);
        // The bump above is a full fence, and Register fences after publishing: a reader missing from this snapshot
        // walks after the bump. The caller's own reader is outside its section and is this thread.
        bool alone = caller is not null && Array.TrueForAll(readers, r => ReferenceEquals(r, caller));
        if (!alone)
        {
            Interlocked.MemoryBarrierProcessWide();
        }
        int self = Environment.CurrentManagedThreadId;
        foreach (RcuReader reader in readers)
        {
            long seen = reader.ReadState();
            if ((seen & 1) == 0 || (seen >> 1) >= target || reader.ScopeThread == self)
            {
                continue;
            }
            Interlocked.Increment(ref _readerWaits);
            var spinner = new SpinWait();
            while (reader.ReadState() == seen)
            {
                spinner.SpinOnce();
            }
        }
        Interlocked.Increment(ref _gracePeriods);
        foreach (Action callback in due)
        {
            callback();
        }
    }

    /// <summary>
    /// <c>call_rcu</c>: runs <paramref name="callback"/> after the next grace period, i.e. once no reader can still see
    /// what the caller unhooked before calling. Batched frees go through here (<see cref="Paging.MmuGather"/>).
    /// </summary>
    public void Defer(Action callback)
    {
        lock (_deferredGate)
        {
            _deferred.Add(callback);
        }
    }

    /// <summary>Callbacks waiting for a grace period (diagnostics and tests).</summary>
    public int PendingCallbacks
    {
        get
        {
            lock (_deferredGate)
            {
                return _deferred.Count;
            }
        }
    }
}
