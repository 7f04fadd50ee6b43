namespace Faultline.Concurrency;

/// <summary>
/// One reader of an <see cref="RcuDomain"/>: the read-side state of a <c>Cpu</c> (the kernel's IRQ-off or
/// <c>rcu_read_lock</c> section that keeps page-table pages and frames alive during a lockless walk).
/// </summary>
/// <remarks>
/// The reader publishes one word: <c>2 × g + 1</c> while inside a section, <c>2 × g</c> outside, where <c>g</c> is a
/// TLB generation this reader observed before the section began. Entering and leaving are plain stores of values
/// computed from a field that does not change between accesses, so back-to-back sections form no store-to-load
/// dependency chain; there is no fence (the writer pays with a process-wide barrier, see
/// <see cref="RcuDomain.Synchronize()"/>). Sections do not nest.
/// </remarks>
internal sealed unsafe class RcuReader
{
    // Pinned so the Cpu's inlined fast path writes through a raw pointer; the word sits in the middle of 192 bytes,
    // alone on its cache line, so writers polling it do not disturb neighbours.
    private readonly long[] _storage = GC.AllocateArray<long>(24, pinned: true);
    private readonly long* _state;
    private readonly TlbGeneration _generation;
    private long _seen;

    /// <summary>Creates a reader outside any section, for the domain whose generation is <paramref name="generation"/>.</summary>
    public RcuReader(TlbGeneration generation)
    {
        _generation = generation;
        _seen = generation.Current;
        fixed (long* p = &_storage[8])
        {
            _state = p;
        }
        *_state = _seen << 1;
    }

    /// <summary>The published word, for the Cpu's inlined fast path (which writes it with the same encoding).</summary>
    public long* State => _state;

    /// <summary>
    /// Enters a read section (<c>rcu_read_lock</c>): publishes "inside" with the last generation seen, then reads the
    /// current one and re-publishes if it moved, so a writer waiting on an older generation sees progress.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Enter()
    {
        Debug.Assert((*_state & 1) == 0, "nested read section");
        Volatile.Write(ref *_state, (_seen << 1) | 1);
        long current = _generation.Current;
        if (current != _seen)
        {
            _seen = current;
            Volatile.Write(ref *_state, (current << 1) | 1);
        }
    }

    /// <summary>
    /// Inside a section, records a newer generation the owner just read (the Cpu's TLB flush), re-publishing "inside"
    /// with it so a writer waiting on an older generation sees progress.
    /// </summary>
    public void Observe(long generation)
    {
        Debug.Assert((*_state & 1) == 1);
        _seen = generation;
        Volatile.Write(ref *_state, (generation << 1) | 1);
    }

    /// <summary>Leaves a read section (<c>rcu_read_unlock</c>): a release store, so the section's loads complete first.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Exit()
    {
        Debug.Assert((*_state & 1) == 1, "unbalanced read section");
        Volatile.Write(ref *_state, _seen << 1);
    }

    /// <summary>
    /// The managed thread holding this reader's section open across accesses (a Cpu scope), or 0. A writer running on
    /// that very thread must not wait for the section (the thread is in the writer, not between the scope's accesses:
    /// the kernel's "the CPU calling synchronize_rcu is quiescent"); it runs <see cref="OwnThreadShootdown"/> instead.
    /// </summary>
    /// <remarks>Written only by the owning thread; a writer compares it with its own id, so only its own write can
    /// match (program order), and a stale value read by another thread never equals that thread's id.</remarks>
    public int ScopeThread
    {
        get => Volatile.Read(ref _scopeThread);
        set => Volatile.Write(ref _scopeThread, value);
    }

    private int _scopeThread;

    /// <summary>
    /// Set (for good) when the owner opens its first scope; a writer that only bumps the generation
    /// (<see cref="RcuDomain.ShootDown"/>) waits for readers that have it, since a scope's hits do not check the bump.
    /// </summary>
    /// <remarks>Written once by the owner, then a full fence; read by writers after their Interlocked bump.</remarks>
    public bool HasOpenedScopes
    {
        get => Volatile.Read(ref _hasOpenedScopes);
        set => Volatile.Write(ref _hasOpenedScopes, value);
    }

    private bool _hasOpenedScopes;

    /// <summary>
    /// What a writer on <see cref="ScopeThread"/> does instead of waiting for the scope's section: the owner's TLB
    /// catches up to the generation passed (a scope's hits do not check the generation, so without it they could reach
    /// what the writer frees). Set once by the owner before the reader is registered.
    /// </summary>
    public Action<long>? OwnThreadShootdown { get; set; }

    // The VMA-tree walk word: 2 × e + 1 inside a walk section entered at walk epoch e, 0 outside.
    private long _walk;

    /// <summary>
    /// Enters a VMA-tree walk section (the <c>rcu_read_lock</c> of <c>lock_vma_under_rcu</c> and of the speculative
    /// fault) at <paramref name="epoch"/>, read from <see cref="RcuDomain.WalkEpoch"/> just before. Tree nodes and
    /// VMAs the walk reaches are not reused until the section ends (<see cref="RcuRecycler{T}"/>). Writers never wait
    /// for these sections, so one may block; sections do not nest.
    /// </summary>
    public void EnterWalk(long epoch)
    {
        Debug.Assert(Volatile.Read(ref _walk) == 0, "nested walk section");
        // Full fence: pairs with the writer's fence between publishing a tree version and reading this word in
        // RcuDomain.TryAdvanceWalkEpoch (store-buffering): the writer sees this section, or the walk sees the version.
        Interlocked.Exchange(ref _walk, (epoch << 1) | 1);
    }

    /// <summary>Leaves the walk section: a release store, so the section's loads of nodes and VMAs complete first.</summary>
    public void ExitWalk()
    {
        Debug.Assert((Volatile.Read(ref _walk) & 1) == 1, "unbalanced walk section");
        Volatile.Write(ref _walk, 0);
    }

    /// <summary>The walk word (acquire), read by a writer advancing the walk epoch.</summary>
    internal long ReadWalkState() => Volatile.Read(ref _walk);

    /// <summary>True while inside a section.</summary>
    public bool IsInside => (*_state & 1) == 1;

    /// <summary>The published word, read by writers.</summary>
    internal long ReadState() => Volatile.Read(ref *_state);
}
