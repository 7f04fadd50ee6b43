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
    private List<(Action<object?> Callback, object? State)> _deferred = [];
    // The list a grace period emptied, kept for the next swap so a grace period allocates nothing (under _deferredGate).
    private List<(Action<object?> Callback, object? State)>? _spareDeferred = [];
    private long _walkEpoch;
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
        List<(Action<object?> Callback, object? State)> due;
        lock (_deferredGate)
        {
            // Callbacks queued before the bump (the lock orders them) belong to this grace period.
            target = Generation.Bump(startPage, endPage);
            due = _deferred;
            _deferred = _spareDeferred ?? [];
            _spareDeferred = null;
        }
        RcuReader[] readers = Volatile.Read(ref _readers);
        // The bump above is a full fence, and Register fences after publishing: a reader missing from this snapshot
        // walks after the bump. The caller's own reader is outside its section and is this thread.
        bool alone = caller is not null && OnlyReaderIs(readers, caller);
        if (!alone)
        {
            Interlocked.MemoryBarrierProcessWide();
        }
        int self = Environment.CurrentManagedThreadId;
        foreach (RcuReader reader in readers)
        {
            long seen = reader.ReadState();
            if ((seen & 1) == 0 || (seen >> 1) >= target)
            {
                continue;
            }
            if (reader.ScopeThread == self)
            {
                // The caller's own scope, between two of its accesses: waiting would never end, so its TLB is flushed
                // here instead (the kernel flushes the local TLB directly rather than by IPI).
                reader.OwnThreadShootdown?.Invoke(target);
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
        foreach ((Action<object?> callback, object? state) in due)
        {
            callback(state);
        }
        due.Clear();
        lock (_deferredGate)
        {
            _spareDeferred ??= due;
        }
    }

    /// <summary>
    /// <c>ptep_clear_flush</c> of a translation whose old frame is never freed (the zero frame): a plain access sees the
    /// bump on its next access, so the bump alone is enough for Cpus outside read scopes; a scope's hits do not check
    /// the generation, so when a Cpu other than <paramref name="caller"/>'s has ever opened one this is a full grace
    /// period, and no scope keeps reading the old frame after the caller's write lands.
    /// </summary>
    public void ShootDown(ulong startPage, ulong endPage, RcuReader caller)
    {
        Generation.Bump(startPage, endPage);
        // The bump is a full fence before the marks are read; pairs with the fence Cpu.EnterScope issues between
        // setting the mark and reading the generation: either the mark is seen here, or the scope catches up with the bump.
        foreach (RcuReader reader in Volatile.Read(ref _readers))
        {
            if (!ReferenceEquals(reader, caller) && reader.HasOpenedScopes)
            {
                Synchronize(startPage, endPage, caller);
                return;
            }
        }
    }

    private static bool OnlyReaderIs(RcuReader[] readers, RcuReader caller)
    {
        foreach (RcuReader reader in readers)
        {
            if (!ReferenceEquals(reader, caller))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// <c>call_rcu</c>: runs <paramref name="callback"/>(<paramref name="state"/>) after the next grace period, i.e.
    /// once no reader can still see what the caller unhooked before calling. Batched frees go through here
    /// (<c>Paging.MmuGather</c>) with a static callback and a reused state object, so deferring allocates nothing.
    /// </summary>
    public void Defer(Action<object?> callback, object? state)
    {
        lock (_deferredGate)
        {
            _deferred.Add((callback, state));
        }
    }

    /// <summary>
    /// The VMA tree's walk epoch (acquire; pairs with the release store in <see cref="TryAdvanceWalkEpoch"/>). A reader
    /// enters its walk section with it (<see cref="RcuReader.EnterWalk"/>); what a writer retired during epoch
    /// <c>e</c> may be reused once the epoch reached <c>e + 2</c> (<see cref="RcuRecycler{T}"/>).
    /// </summary>
    public long WalkEpoch => Volatile.Read(ref _walkEpoch);

    /// <summary>
    /// Advances the walk epoch by one if no reader is inside a walk section entered at an older epoch; never waits
    /// (epoch-based reclamation: a reader inside a section only delays reuse). Callers are serialised by the mmap
    /// write lock and call it after publishing a tree version.
    /// </summary>
    public bool TryAdvanceWalkEpoch()
    {
        long epoch = _walkEpoch;
        // Full fence: the caller's release store of the new tree root is visible before the walk words are read
        // (pairs with the reader's Interlocked entry in RcuReader.EnterWalk).
        Interlocked.MemoryBarrier();
        foreach (RcuReader reader in Volatile.Read(ref _readers))
        {
            long state = reader.ReadWalkState();
            if ((state & 1) != 0 && state >> 1 != epoch)
            {
                return false;
            }
        }
        // Release: a reader that enters at the new epoch sees every version published before it.
        Volatile.Write(ref _walkEpoch, epoch + 1);
        return true;
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
