using System.Diagnostics.CodeAnalysis;
using Faultline.Concurrency;
using Faultline.Paging;

namespace Faultline.Areas;

/// <summary>
/// One mapping [<see cref="Start"/>, <see cref="End"/>) (the kernel's <c>vm_area_struct</c>), with the two
/// reader protocols every writer maintains: the SPF sequence (<c>vm_sequence</c>) and the per-VMA refcount lock
/// (<c>vm_refcnt</c> and <c>vm_lock_seq</c>, the design of the "move per-vma lock into vm_area_struct" series).
/// </summary>
/// <remarks>
/// Fields change only with the mmap lock held for write, after <see cref="StartWrite"/> and inside a
/// <see cref="Sequence"/> write section. Lockless readers (speculative faults) read them between a sequence
/// snapshot and its re-validation; per-VMA-lock readers read them while holding the read lock.
/// <para>
/// <c>vm_refcnt</c>: 0 detached; 1 attached and unlocked (or write-locked when <c>vm_lock_seq == mm_lock_seq</c>);
/// n &gt; 1 read-locked by n-1 readers; <see cref="LockOffset"/> added while a writer or detacher excludes readers.
/// Readers may take the count up to <see cref="RefLimit"/>, never past it, so a writer always has room to add the offset
/// (at most <see cref="RefLimit"/> + <see cref="LockOffset"/> = int.MaxValue).
/// </para>
/// </remarks>
internal sealed class Vma
{
    /// <summary><c>VMA_LOCK_OFFSET</c>.</summary>
    public const int LockOffset = 0x4000_0000;
    /// <summary><c>VMA_REF_LIMIT</c>: readers may not take the count past it.</summary>
    public const int RefLimit = LockOffset - 1;

    // An even value can never equal the odd mm_lock_seq of a write section: a new VMA is not write-locked.
    private const long NeverLocked = long.MinValue;

    private static long s_nextId;

    private readonly MmapLock _mmapLock;
    private readonly VmaWriterWait _writerWait;
    private readonly ProbeSet _probes;
    private int _refCount;
    private long _lockSequence = NeverLocked;
    private AnonVma? _anonVma;
    private UserFaultContext? _userFault;

    /// <summary>The SPF sequence: odd while a writer changes this VMA.</summary>
    public SeqCount Sequence;

    // The range, offset, flags, protection, backing and policy never change while the VMA is in the tree, or while a
    // reader may still hold it: a writer that changes any of them replaces the VMA, and a retired VMA is reinitialised
    // for reuse only after the walk epoch moved twice (Reinitialise). The speculative path's snapshot between two
    // sequence reads rests on that.

    /// <summary>First address (<c>vm_start</c>).</summary>
    public ulong Start { get; private set; }
    /// <summary>End, exclusive (<c>vm_end</c>).</summary>
    public ulong End { get; private set; }
    /// <summary>Offset in pages (<c>vm_pgoff</c>; for anonymous memory, the start address in pages at creation).</summary>
    public ulong PageOffset { get; private set; }
    /// <summary><c>vm_flags</c>.</summary>
    public VmFlags Flags { get; private set; }
    /// <summary><c>vm_page_prot</c>, derived from the access flags.</summary>
    public PageProtection PageProtection { get; private set; }
    /// <summary>What backs the mapping.</summary>
    public Backing.IBacking Backing { get; private set; }
    /// <summary>NUMA policy.</summary>
    public MemoryPolicy Policy { get; private set; }

    /// <summary>
    /// <c>swap_readahead_info</c>: the swap readahead window's state (the last swap fault's page, the window, the hits;
    /// packed by <c>Faults.SwapReadahead</c>). A hint written by faults under any lock or none; read and written whole.
    /// </summary>
    public ulong SwapReadaheadInfo;

    /// <summary>Creates a detached VMA.</summary>
    public Vma(MmapLock mmapLock, VmaWriterWait writerWait, ProbeSet probes, ulong start, ulong end, ulong pageOffset, VmFlags flags,
        Backing.IBacking backing, MemoryPolicy policy = MemoryPolicy.Default)
    {
        _mmapLock = mmapLock;
        _writerWait = writerWait;
        _probes = probes;
        Initialise(start, end, pageOffset, flags, backing, policy);
    }

    /// <summary>
    /// <c>vm_area_alloc</c> from the address space's recycled VMAs: gives a detached VMA that no reader can still hold
    /// (retired two walk epochs ago) a new identity. The sequence moves by two rather than restarting, so a reader
    /// holding a snapshot of an older identity could never validate against this one.
    /// </summary>
    public void Reinitialise(ulong start, ulong end, ulong pageOffset, VmFlags flags, Backing.IBacking backing,
        MemoryPolicy policy = MemoryPolicy.Default)
    {
        Debug.Assert(Volatile.Read(ref _refCount) == 0 && !Sequence.IsWriting, "reuse of a VMA in use");
        Sequence.BeginWrite();
        _anonVma = null;
        _userFault = null;
        Initialise(start, end, pageOffset, flags, backing, policy);
        Sequence.EndWrite();
    }

    [MemberNotNull(nameof(Backing))]
    private void Initialise(ulong start, ulong end, ulong pageOffset, VmFlags flags, Backing.IBacking backing, MemoryPolicy policy)
    {
        Start = start;
        End = end;
        PageOffset = pageOffset;
        Flags = flags;
        PageProtection = ProtectionOf(flags);
        Backing = backing;
        Policy = policy;
        SwapReadaheadInfo = 0;
        Id = Interlocked.Increment(ref s_nextId);
    }

    /// <summary>A stable identity for diagnostics and tests: a reused VMA gets a new one.</summary>
    public long Id { get; private set; }

    /// <summary>
    /// <c>anon_vma</c>: null until the first anonymous fault. Published with a release store so a lockless reader
    /// that sees it also sees the object initialised; changed only under <c>page_table_lock</c> or the mmap write lock.
    /// </summary>
    public AnonVma? AnonVma
    {
        get => Volatile.Read(ref _anonVma);
        set => Volatile.Write(ref _anonVma, value);
    }

    /// <summary>
    /// <c>vm_userfaultfd_ctx</c>: the user-fault channel the VMA is registered with (set iff a <c>VM_UFFD_*</c> flag
    /// is). Set only on a VMA not yet attached, under the mmap write lock; read by faults holding the mmap or VMA lock,
    /// which the attach orders after the store.
    /// </summary>
    public UserFaultContext? UserFault
    {
        get => _userFault;
        set => _userFault = value;
    }

    /// <summary>The raw <c>vm_refcnt</c> (tests, assertions).</summary>
    public int RefCount => Volatile.Read(ref _refCount);

    /// <summary>The raw <c>vm_lock_seq</c> (tests, assertions).</summary>
    public long LockSequence => Volatile.Read(ref _lockSequence);

    /// <summary>True once removed from the tree (<c>vm_refcnt == 0</c>).</summary>
    public bool IsDetached => Volatile.Read(ref _refCount) == 0;

    /// <summary>Bytes covered.</summary>
    public ulong Length => End - Start;

    /// <summary>True when <paramref name="address"/> lies inside.</summary>
    public bool Contains(ulong address) => address >= Start && address < End;

    /// <summary>The page protection a set of flags gives (<c>vm_get_page_prot</c>).</summary>
    public static PageProtection ProtectionOf(VmFlags flags) =>
        new((flags & VmFlags.Read) != 0, (flags & VmFlags.Write) != 0, (flags & VmFlags.Exec) != 0);

    /// <summary>
    /// <c>vma_start_read</c>: takes the read lock without waiting, or says why not. The cheap check may give a false
    /// "locked"; the authoritative re-check after the acquiring increment never gives a false "unlocked".
    /// </summary>
    public VmaReadLock TryStartRead()
    {
        if (Volatile.Read(ref _lockSequence) == _mmapLock.LockSequence)
        {
            return VmaReadLock.WriteLocked;
        }
        _probes.Hit(ProbePoint.VmaReadBeforeIncrement);
        int old = Volatile.Read(ref _refCount);
        while (true)
        {
            if (old == 0)
            {
                return VmaReadLock.Detached;
            }
            if (old >= RefLimit)
            {
                return VmaReadLock.Busy;
            }
            // The CAS is a full fence, so the re-check below cannot read vm_lock_seq before the count is raised:
            // a writer that stamps after this increment must first wait for it to drain.
            int seen = Interlocked.CompareExchange(ref _refCount, old + 1, old);
            if (seen == old)
            {
                break;
            }
            old = seen;
        }
        _probes.Hit(ProbePoint.VmaReadIncremented);
        // Acquire read of mm_lock_seq: pairs with the release in vma_end_write_all, so if the write section just
        // ended, this reader sees every change it made.
        if (Volatile.Read(ref _lockSequence) == _mmapLock.LockSequence)
        {
            EndRead();
            return VmaReadLock.WriteLocked;
        }
        return VmaReadLock.Locked;
    }

    /// <summary>
    /// <c>vma_end_read</c> (<c>vma_refcount_put</c>): drops the reference; the last reader of a VMA a writer is
    /// waiting on wakes it.
    /// </summary>
    public void EndRead()
    {
        int remaining = Interlocked.Decrement(ref _refCount);
        Debug.Assert(remaining >= 0, "unbalanced vma_end_read");
        if (remaining != 0 && IsWriterOnly(remaining))
        {
            _writerWait.Wake();
        }
    }

    // is_vma_writer_only: the offset is set and at most the attached reference remains besides it.
    private static bool IsWriterOnly(int count) => (count & LockOffset) != 0 && count <= LockOffset + 1;

    /// <summary>
    /// <c>vma_start_write</c>: with the mmap lock held for write, excludes readers and stamps <c>vm_lock_seq</c>.
    /// There is no unlock: ending the mmap write section releases every stamped VMA at once.
    /// </summary>
    public void StartWrite()
    {
        long mmSequence = _mmapLock.LockSequence;
        Debug.Assert((mmSequence & 1) == 1 && _mmapLock.IsWriteLocked, "vma_start_write without the mmap write lock");
        if (Volatile.Read(ref _lockSequence) == mmSequence)
        {
            return;
        }
        bool attached = TryAddOffset();
        if (attached)
        {
            _probes.Hit(ProbePoint.VmaWriterWaiting);
            _writerWait.WaitFor(ref _refCount, LockOffset + 1);
        }
        Volatile.Write(ref _lockSequence, mmSequence);
        if (attached)
        {
            // Full fence: the stamp is visible before readers can increment again.
            int left = Interlocked.Add(ref _refCount, -LockOffset);
            Debug.Assert(left > 0, "vma_start_write left the VMA detached"); // __vma_start_write's WARN_ON_ONCE(detached)
        }
    }

    // refcount_add_not_zero(VMA_LOCK_OFFSET): a detached VMA has no readers to exclude.
    private bool TryAddOffset()
    {
        int old = Volatile.Read(ref _refCount);
        while (old != 0)
        {
            int seen = Interlocked.CompareExchange(ref _refCount, old + LockOffset, old);
            if (seen == old)
            {
                return true;
            }
            old = seen;
        }
        return false;
    }

    /// <summary><c>vma_mark_attached</c>: a write-locked, detached VMA becomes visible to readers (count 1, release).</summary>
    public void MarkAttached()
    {
        // vma_assert_write_locked + vma_assert_detached: only a writer attaches, and only from 0 (per-VMA refcount lock review, 2024-12: the stamp
        // is set before the VMA becomes reachable; attaching an attached VMA is a caller bug, not a no-op).
        AssertWriteLocked();
        Debug.Assert(Volatile.Read(ref _refCount) == 0, "attach of an attached VMA");
        Volatile.Write(ref _refCount, 1);
    }

    /// <summary>
    /// <c>vma_mark_detached</c>: drops the attached reference. A reader that found the VMA before it left the tree may
    /// have raised the count meanwhile (it will fail its re-check, since the VMA is write-locked); such spurious
    /// readers are excluded and waited out, so the count ends at 0 with nobody inside.
    /// </summary>
    public void MarkDetached()
    {
        AssertWriteLocked();
        // vma_assert_attached: detaching a detached VMA would take the count to -1, add the offset to that and wait
        // forever for it to read VMA_LOCK_OFFSET.
        Debug.Assert(Volatile.Read(ref _refCount) > 0, "detach of a detached VMA");
        _probes.Hit(ProbePoint.VmaBeforeDetach);
        if (Interlocked.Decrement(ref _refCount) == 0)
        {
            return;
        }
        if (TryAddOffset())
        {
            _probes.Hit(ProbePoint.VmaDetachWaiting);
            _writerWait.WaitFor(ref _refCount, LockOffset);
            Interlocked.Add(ref _refCount, -LockOffset);
        }
        Debug.Assert(Volatile.Read(ref _refCount) == 0);
    }

    /// <summary>
    /// Test hook: adds <paramref name="delta"/> to <c>vm_refcnt</c> in one step, as if that many readers entered (or,
    /// negative, left without waking a writer). Lets tests put the count at <see cref="RefLimit"/> without 2^30 threads.
    /// </summary>
    internal void AdjustRefCountForTest(int delta) => Interlocked.Add(ref _refCount, delta);

    /// <summary><c>vma_assert_write_locked</c>.</summary>
    [Conditional("DEBUG")]
    public void AssertWriteLocked() =>
        Debug.Assert(Volatile.Read(ref _lockSequence) == _mmapLock.LockSequence, "VMA not write-locked");

    /// <summary><c>vma_assert_locked</c>: read-locked by someone, or write-locked.</summary>
    [Conditional("DEBUG")]
    public void AssertLocked() =>
        Debug.Assert(Volatile.Read(ref _refCount) > 1 || Volatile.Read(ref _lockSequence) == _mmapLock.LockSequence, "VMA not locked");

    /// <inheritdoc />
    public override string ToString() => $"vma#{Id} [{Start:x}, {End:x}) {Flags}";
}
