using System.Runtime.InteropServices;
using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline;

/// <summary>
/// A guest execution context attached to one <see cref="AddressSpace"/>: its data plane (loads, stores, fetches,
/// atomics, span copies), with a software TLB, a read section that keeps frames alive while it touches them, and
/// page faults raised through the address space's fault path.
/// </summary>
/// <remarks>
/// <para>
/// Every access: enter the read section (one store to this Cpu's own cache line); compare the address space's TLB
/// generation with this TLB's and flush on change; on a TLB hit with the permission, touch the frame directly;
/// otherwise walk the page table without locks and fill the TLB, or leave the section and fault. A writer that
/// removes a translation bumps the generation and then waits for every section that might predate the bump, so a
/// frame is never reused while this Cpu can still reach it.
/// </para>
/// <para>
/// Thread safety: a Cpu is used by one thread at a time (it models one processor); different Cpus of one address
/// space run in parallel. A second thread using a Cpu while another is inside its slow path (a TLB miss or a fault)
/// gets <see cref="InvalidOperationException"/>; Debug builds also check on the TLB hit path.
/// </para>
/// <para>
/// Disposal: <see cref="Dispose"/> detaches the Cpu (<c>mm_users</c> drops) and gives its cached frames back; any later
/// access throws <see cref="ObjectDisposedException"/>. Disposing the address space first is allowed: its Cpus'
/// next accesses throw <see cref="ObjectDisposedException"/> (an access in flight on another thread finishes first),
/// and their own <see cref="Dispose"/> then does nothing more.
/// </para>
/// </remarks>
public sealed unsafe class Cpu : IDisposable
{
    private const ulong PageOffsetMask = PageGeometry.PageOffsetMask;
    private const int PageSize = PageGeometry.PageSize;
    private const int FaultLivelockLimit = 100_000;
    // A TLB generation the address space never reaches (it starts at 0 and only grows): a disposed Cpu takes it, so
    // every access misses the hit path and reaches the disposed check at no cost to the hit path itself.
    private const long DisposedGeneration = -1;
    // The scope generation when no scope is open: never equal to the address space's generation, so a scoped access
    // through an ended scope misses its hit path and is refused on the slow path.
    private const long NoScope = -2;

    private readonly MemoryDescriptor _mm;
    private readonly FaultCpu _faultCpu;
    private readonly RcuReader _reader;
    private readonly SoftwareTlb _tlb;
    private readonly long* _section;     // this Cpu's published read-section word (RcuReader), for the inlined hit path
    private readonly long* _generation;  // the address space's TLB generation
    private readonly TlbEntry* _tlbEntries;
    private readonly ulong _tlbMask;
    private long _tlbGeneration;         // the generation the TLB's contents are valid for
    private long _scopeGeneration = NoScope; // _tlbGeneration while a scope is open, else NoScope (never matches)
    private long _exitWord;              // what leaving an access publishes: "outside", or "inside" while a scope is open
    private bool _scopeOpen;
    private long _scopeId;               // the open (or last) scope's number, so a copy of an ended scope is refused
    private AccessOutcome _lastOutcome;
    private bool _disposed;

    internal Cpu(AddressSpace addressSpace, MemoryDescriptor mm)
    {
        AddressSpace = addressSpace;
        _mm = mm;
        _faultCpu = new FaultCpu(mm.Memory, mm.Rcu);
        _reader = _faultCpu.Reader;
        _tlb = new SoftwareTlb(addressSpace.Options.TlbEntries);
        _tlbGeneration = mm.Tlb.Current;
        _exitWord = _tlbGeneration << 1;
        _tlbEntries = _tlb.Entries;
        _tlbMask = _tlb.Mask;
        _section = _reader.State;
        _generation = mm.Tlb.Address;
        if (!mm.TryAttachCpu(_reader, _faultCpu.Counters, _faultCpu.Claim))
        {
            ObjectDisposedException.ThrowIf(true, addressSpace);
        }
    }

    /// <summary>The address space this Cpu runs in.</summary>
    public AddressSpace AddressSpace { get; }

    /// <summary>A process-unique number, the one a <see cref="UserFaultEvent"/> names as <see cref="UserFaultEvent.CpuId"/>.</summary>
    public long Id => _faultCpu.Id;

    /// <summary>Reads a value; throws <see cref="SegmentationFaultException"/> or <see cref="GuestOutOfMemoryException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Load<T>(ulong address) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = EnterTranslated(address, AccessKind.Read);
            if (p != null)
            {
                T value = Unsafe.ReadUnaligned<T>(p);
                ExitSection();
                return value;
            }
            ThrowFault(address, AccessKind.Read);
        }
        return LoadAcrossPages<T>(address, AccessKind.Read);
    }

    /// <summary>Reads a value, returning the outcome instead of throwing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryLoad<T>(ulong address, out T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = EnterTranslated(address, AccessKind.Read);
            if (p != null)
            {
                value = Unsafe.ReadUnaligned<T>(p);
                ExitSection();
                return AccessOutcome.Ok;
            }
            value = default;
            return _lastOutcome;
        }
        return TryLoadSplit(address, AccessKind.Read, out value);
    }

    /// <summary>Fetches instruction bytes (needs execute permission).</summary>
    public T Fetch<T>(ulong address) where T : unmanaged =>
        Check(TryFetch(address, out T value), address, AccessKind.Execute, value);

    /// <summary>Fetches instruction bytes, returning the outcome.</summary>
    public AccessOutcome TryFetch<T>(ulong address, out T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = EnterTranslated(address, AccessKind.Execute);
            if (p != null)
            {
                value = Unsafe.ReadUnaligned<T>(p);
                ExitSection();
                return AccessOutcome.Ok;
            }
            value = default;
            return _lastOutcome;
        }
        return TryLoadSplit(address, AccessKind.Execute, out value);
    }

    /// <summary>Writes a value; throws <see cref="SegmentationFaultException"/> or <see cref="GuestOutOfMemoryException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<T>(ulong address, T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = EnterTranslated(address, AccessKind.Write);
            if (p != null)
            {
                Unsafe.WriteUnaligned(p, value);
                ExitSection();
                return;
            }
            ThrowFault(address, AccessKind.Write);
        }
        StoreAcrossPages(address, value);
    }

    /// <summary>Writes a value, returning the outcome.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryStore<T>(ulong address, T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = EnterTranslated(address, AccessKind.Write);
            if (p != null)
            {
                Unsafe.WriteUnaligned(p, value);
                ExitSection();
                return AccessOutcome.Ok;
            }
            return _lastOutcome;
        }
        return TryWrite(address, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));
    }

    /// <summary>Copies guest memory into <paramref name="destination"/>, across pages; throws on an unresolvable fault.</summary>
    public void Read(ulong address, Span<byte> destination)
    {
        AccessOutcome outcome = TryRead(address, destination, out ulong failedAt);
        if (outcome != AccessOutcome.Ok)
        {
            throw GuestAccessException.For(failedAt, AccessKind.Read, outcome);
        }
    }

    /// <summary>Copies guest memory out, one translation per page; stops at the first unresolvable page.</summary>
    public AccessOutcome TryRead(ulong address, Span<byte> destination) => TryRead(address, destination, out _);

    private AccessOutcome TryRead(ulong address, Span<byte> destination, out ulong failedAt)
    {
        GuestTransfer transfer = ReadPartial(address, destination);
        failedAt = transfer.FaultAddress;
        return transfer.Outcome;
    }

    /// <summary>
    /// Copies guest memory out, one translation per page, as <c>process_vm_readv</c> with one segment: on an
    /// unresolvable fault it stops and reports the bytes copied before the failing page and the failing address.
    /// Access checks are this Cpu's (a write-only page is readable, as on x86), not <c>process_vm_readv</c>'s
    /// <c>VM_READ</c> check.
    /// </summary>
    public GuestTransfer ReadPartial(ulong address, Span<byte> destination)
    {
        fixed (byte* host = destination)
        {
            return Copy(address, host, destination.Length, AccessKind.Read);
        }
    }

    /// <summary>
    /// <c>process_vm_readv</c> on this address space: fills <paramref name="destination"/> from the guest
    /// <paramref name="segments"/> in order until either runs out or an access fails; a failure ends the copy (no later
    /// segment is tried). Throws <see cref="ArgumentOutOfRangeException"/> for a segment with a negative length or one
    /// that wraps past the top of the address space, before copying anything (the system call's <c>EINVAL</c>).
    /// </summary>
    public GuestTransfer ReadVectored(ReadOnlySpan<GuestSegment> segments, Span<byte> destination)
    {
        fixed (byte* host = destination)
        {
            return CopyVectored(segments, host, destination.Length, AccessKind.Read);
        }
    }

    /// <summary>Copies <paramref name="source"/> into guest memory, across pages; throws on an unresolvable fault.</summary>
    public void Write(ulong address, ReadOnlySpan<byte> source)
    {
        AccessOutcome outcome = TryWrite(address, source, out ulong failedAt);
        if (outcome != AccessOutcome.Ok)
        {
            throw GuestAccessException.For(failedAt, AccessKind.Write, outcome);
        }
    }

    /// <summary>Copies into guest memory, one translation per page; stops at the first unresolvable page.</summary>
    public AccessOutcome TryWrite(ulong address, ReadOnlySpan<byte> source) => TryWrite(address, source, out _);

    private AccessOutcome TryWrite(ulong address, ReadOnlySpan<byte> source, out ulong failedAt)
    {
        GuestTransfer transfer = WritePartial(address, source);
        failedAt = transfer.FaultAddress;
        return transfer.Outcome;
    }

    /// <summary>
    /// Copies into guest memory, one translation per page, as <c>process_vm_writev</c> with one segment: on an
    /// unresolvable fault it stops and reports the bytes written before the failing page and the failing address; the
    /// pages before it keep what was written.
    /// </summary>
    public GuestTransfer WritePartial(ulong address, ReadOnlySpan<byte> source)
    {
        fixed (byte* host = source)
        {
            return Copy(address, host, source.Length, AccessKind.Write);
        }
    }

    /// <summary>
    /// <c>process_vm_writev</c> on this address space: writes <paramref name="source"/> to the guest
    /// <paramref name="segments"/> in order until either runs out or an access fails; a failure ends the copy. Segment
    /// validation as in <see cref="ReadVectored"/>.
    /// </summary>
    public GuestTransfer WriteVectored(ReadOnlySpan<GuestSegment> segments, ReadOnlySpan<byte> source)
    {
        fixed (byte* host = source)
        {
            return CopyVectored(segments, host, source.Length, AccessKind.Write);
        }
    }

    // Every bulk copy: one translation per guest page of [address, address + length), copied from (a read) or to (a
    // write) the host buffer; stops at the first page that cannot be translated.
    private GuestTransfer Copy(ulong address, byte* host, int length, AccessKind access)
    {
        int done = 0;
        while (done < length)
        {
            ulong at = address + (ulong)done;
            int chunk = (int)Math.Min((ulong)(length - done), PageSize - (at & PageOffsetMask));
            byte* guest = EnterTranslated(at, access);
            if (guest == null)
            {
                return new GuestTransfer(done, _lastOutcome, at);
            }
            if (access == AccessKind.Write)
            {
                Buffer.MemoryCopy(host + done, guest, chunk, chunk);
            }
            else
            {
                Buffer.MemoryCopy(guest, host + done, chunk, chunk);
            }
            ExitSection();
            done += chunk;
        }
        return new GuestTransfer(done, AccessOutcome.Ok, 0);
    }

    // The segments in order, the host buffer consumed as they go; a failure ends the copy (no later segment is tried).
    private GuestTransfer CopyVectored(ReadOnlySpan<GuestSegment> segments, byte* host, int length, AccessKind access)
    {
        ValidateSegments(segments);
        int done = 0;
        foreach (GuestSegment segment in segments)
        {
            int part = Math.Min(segment.Length, length - done);
            if (part == 0)
            {
                continue;
            }
            GuestTransfer copied = Copy(segment.Address, host + done, part, access);
            done += copied.BytesTransferred;
            if (!copied.IsComplete)
            {
                return copied with { BytesTransferred = done };
            }
        }
        return new GuestTransfer(done, AccessOutcome.Ok, 0);
    }

    // The system call rejects a bad vector before it copies anything.
    private static void ValidateSegments(ReadOnlySpan<GuestSegment> segments)
    {
        foreach (GuestSegment segment in segments)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(segment.Length, nameof(segments));
            if (segment.Address > ulong.MaxValue - (ulong)segment.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(segments), $"segment at 0x{segment.Address:x} wraps past the top of the address space");
            }
        }
    }

    /// <summary>Atomic compare-and-exchange of an aligned 32-bit value (needs write permission, like x86 <c>cmpxchg</c>).</summary>
    public int CompareExchange(ulong address, int value, int comparand) =>
        Check(TryCompareExchange(address, value, comparand, out int original), address, AccessKind.Write, original);

    /// <summary>Atomic compare-and-exchange of an aligned 64-bit value.</summary>
    public long CompareExchange(ulong address, long value, long comparand) =>
        Check(TryCompareExchange(address, value, comparand, out long original), address, AccessKind.Write, original);

    /// <summary>Compare-and-exchange of an aligned 32-bit value; misalignment is a bus error.</summary>
    public AccessOutcome TryCompareExchange(ulong address, int value, int comparand, out int original)
    {
        original = 0;
        if ((address & 3) != 0)
        {
            return AccessOutcome.BusError;
        }
        byte* p = EnterTranslated(address, AccessKind.Write);
        if (p == null)
        {
            return _lastOutcome;
        }
        original = Interlocked.CompareExchange(ref Unsafe.AsRef<int>(p), value, comparand);
        ExitSection();
        return AccessOutcome.Ok;
    }

    /// <summary>Compare-and-exchange of an aligned 64-bit value; misalignment is a bus error.</summary>
    public AccessOutcome TryCompareExchange(ulong address, long value, long comparand, out long original)
    {
        original = 0;
        if ((address & 7) != 0)
        {
            return AccessOutcome.BusError;
        }
        byte* p = EnterTranslated(address, AccessKind.Write);
        if (p == null)
        {
            return _lastOutcome;
        }
        original = Interlocked.CompareExchange(ref Unsafe.AsRef<long>(p), value, comparand);
        ExitSection();
        return AccessOutcome.Ok;
    }

    /// <summary>
    /// Opens a read scope: this Cpu's read section stays entered until the scope is disposed, so the TLB-hit accesses
    /// of <see cref="CpuScope"/> store nothing (the model QEMU uses for its vCPUs). Plain accesses of this Cpu stay
    /// allowed inside it. See <see cref="CpuScope"/> for what a scope obliges its thread to do.
    /// </summary>
    /// <exception cref="InvalidOperationException">A scope of this Cpu is already open.</exception>
    /// <exception cref="ObjectDisposedException">The Cpu or its address space is disposed.</exception>
    public CpuScope EnterScope()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_scopeOpen)
        {
            throw new InvalidOperationException("a scope of this Cpu is already open");
        }
        UseClaim claim = _faultCpu.Claim;
        if (!claim.TryEnter(Environment.CurrentManagedThreadId))
        {
            ThrowUsedByAnotherThread();
        }
        try
        {
            if (_mm.IsExiting)
            {
                ThrowAddressSpaceDisposed();
            }
            _reader.Enter();
            // The TLB is valid for _tlbGeneration only; the scope's hit path compares against it, and the section just
            // published a generation no newer than the one the TLB catches up to on its first miss.
            _scopeOpen = true;
            _scopeGeneration = _tlbGeneration;
            _exitWord = (_tlbGeneration << 1) | 1;
            _reader.ScopeThread = Environment.CurrentManagedThreadId;
            return new CpuScope(this, ++_scopeId);
        }
        finally
        {
            claim.Exit();
        }
    }

    // The scope's hit path: a generation compare and a tag compare, no store (the section is held by the scope).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal byte* TranslateInScope(ulong address, AccessKind kind, long scopeId)
    {
        CheckNotInUseElsewhere();
        ulong page = address >> PageGeometry.PageShift;
        // Acquire read; pairs with the writer's Interlocked bump. While it matches, the writer that bumps next waits
        // for this section (odd since the scope opened) before it frees anything this TLB still maps.
        if (Volatile.Read(ref *_generation) == _scopeGeneration)
        {
            TlbEntry* slot = _tlbEntries + (page & _tlbMask);
            ulong tag = kind switch
            {
                AccessKind.Read => slot->ReadTag,
                AccessKind.Write => slot->WriteTag,
                _ => slot->ExecuteTag,
            };
            if (tag == page + 1)
            {
                return (byte*)slot->HostPage + (address & PageOffsetMask);
            }
        }
        return TranslateInScopeSlow(address, kind, scopeId);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte* TranslateInScopeSlow(ulong address, AccessKind kind, long scopeId)
    {
        if (!_scopeOpen || scopeId != _scopeId)
        {
            ObjectDisposedException.ThrowIf(true, typeof(CpuScope));
        }
        // Entered with the section held (by the scope), as the plain slow path is; it returns with it held.
        return EnterTranslatedSlow(address, kind);
    }

    /// <summary>
    /// <c>rcu_quiescent_state</c> for an open scope: lets writers waiting for this Cpu's section go on. The scope stays
    /// open; the TLB catches up on the next access.
    /// </summary>
    internal void QuiescentPoint(long scopeId)
    {
        if (!_scopeOpen || scopeId != _scopeId)
        {
            ObjectDisposedException.ThrowIf(true, typeof(CpuScope));
        }
        LeaveSection();
        if (!_mm.IsExiting)
        {
            _reader.Enter();
        }
    }

    /// <summary>Ends the scope <paramref name="scopeId"/> if it is the open one.</summary>
    internal void ExitScope(long scopeId)
    {
        if (_scopeOpen && scopeId == _scopeId)
        {
            CloseScope();
        }
    }

    private void CloseScope()
    {
        if (!_scopeOpen)
        {
            return;
        }
        _scopeOpen = false;
        _scopeGeneration = NoScope;
        _exitWord = _tlbGeneration << 1;
        _reader.ScopeThread = 0;
        LeaveSection();
    }

    // The scope's out-of-line cases: the plain paths handle accesses across pages and throwing.
    internal T LoadAcrossPagesInScope<T>(ulong address) where T : unmanaged => LoadAcrossPages<T>(address, AccessKind.Read);

    internal void StoreAcrossPagesInScope<T>(ulong address, T value) where T : unmanaged => StoreAcrossPages(address, value);

    internal AccessOutcome TryLoadAcrossPagesInScope<T>(ulong address, out T value) where T : unmanaged =>
        TryLoadSplit(address, AccessKind.Read, out value);

    internal AccessOutcome LastOutcome => _lastOutcome;

    /// <summary>This Cpu's read section (tests: whether it is held).</summary>
    internal bool IsInReadSection => _reader.IsInside;

    [MethodImpl(MethodImplOptions.NoInlining)]
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    internal void ThrowFaultInScope(ulong address, AccessKind kind) => ThrowFault(address, kind);

    /// <summary>
    /// Detaches from the address space (<c>mm_users</c> drops); cached frames go back. Later accesses throw
    /// <see cref="ObjectDisposedException"/>. Harmless after the address space was disposed, and when called twice.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another thread is inside this Cpu's slow path.</exception>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        UseClaim claim = _faultCpu.Claim;
        if (!claim.TryEnter(Environment.CurrentManagedThreadId))
        {
            ThrowUsedByAnotherThread();
        }
        try
        {
            _disposed = true;
            CloseScope();
            _tlbGeneration = DisposedGeneration;
            _exitWord = DisposedGeneration << 1;
            _tlb.Flush();
            // Read after the claim store (UseClaim's pairing with MemoryDescriptor.Dispose): an address space being
            // torn down either waits for this detach or is seen here, and then its arena must not be touched.
            if (!_mm.IsExiting)
            {
                _faultCpu.Frames.DrainAll();
                _mm.DetachCpu(_reader, _faultCpu.Counters, claim);
            }
        }
        finally
        {
            claim.Exit();
        }
    }

    // rcu_read_unlock inlined: "outside" (even), or "inside" again while a scope is open, so a plain access inside a
    // scope leaves the scope's section as it found it; a field the access loop does not change.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ExitSection() => Volatile.Write(ref *_section, _exitWord);

    // Really leaves the section, scope or not: before a fault (which may wait for a writer that waits for this
    // section) and when the Cpu or its address space is gone (a teardown must not wait for it).
    private void LeaveSection() => Volatile.Write(ref *_section, _tlbGeneration << 1);

    // Returns the host address for the access with the read section entered, or null (section left, outcome in
    // _lastOutcome). The hit path is a generation compare, a tag compare and no shared-memory write.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* EnterTranslated(ulong address, AccessKind kind)
    {
        CheckNotInUseElsewhere();
        ulong page = address >> PageGeometry.PageShift;
        // rcu_read_lock inlined (RcuReader's encoding): "inside, having seen the TLB's generation"; then the check
        // that the generation has not moved since. A mismatch goes to the slow path, which flushes and re-publishes.
        long seen = _tlbGeneration;
        Volatile.Write(ref *_section, (seen << 1) | 1);
        if (Volatile.Read(ref *_generation) == seen)
        {
            TlbEntry* slot = _tlbEntries + (page & _tlbMask);
            ulong tag = kind switch
            {
                AccessKind.Read => slot->ReadTag,
                AccessKind.Write => slot->WriteTag,
                _ => slot->ExecuteTag,
            };
            if (tag == page + 1)
            {
                return (byte*)slot->HostPage + (address & PageOffsetMask);
            }
        }
        return EnterTranslatedSlow(address, kind);
    }

    // Entered with the read section held. The walk and any fault run with this Cpu claimed, which catches a second
    // thread using it meanwhile and makes an address space being disposed wait for them (or be seen here).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte* EnterTranslatedSlow(ulong address, AccessKind kind)
    {
        if (_disposed)
        {
            LeaveSection();
            ObjectDisposedException.ThrowIf(true, this);
        }
        UseClaim claim = _faultCpu.Claim;
        if (!claim.TryEnter(Environment.CurrentManagedThreadId))
        {
            // Marks the section left although the owner may be inside one: it is almost always in a fault, outside
            // its section, and a word left odd would stall every grace period until this Cpu's next access.
            ExitSection();
            ThrowUsedByAnotherThread();
        }
        try
        {
            // Read after the claim store (UseClaim's pairing with MemoryDescriptor.Dispose).
            if (_mm.IsExiting)
            {
                LeaveSection();
                ThrowAddressSpaceDisposed();
            }
            return WalkOrFault(address, kind);
        }
        finally
        {
            // A scope stays inside its section whatever the access did (a fault that failed or threw left it), unless
            // the address space is going: its teardown must not wait for this Cpu.
            if (_scopeOpen && !_reader.IsInside && !_mm.IsExiting)
            {
                _reader.Enter();
            }
            claim.Exit();
        }
    }

    // The TLB miss: a lockless walk that fills the TLB, else a fault and another try. Runs with the Cpu claimed.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* WalkOrFault(ulong address, AccessKind kind)
    {
        ulong page = address >> PageGeometry.PageShift;
        PageTable table = _mm.PageTable;
        int faults = 0;
        while (true)
        {
            long generation = _mm.Tlb.Current;
            if (generation != _tlbGeneration)
            {
                CatchUp(generation);
            }
            if (address >= PageGeometry.UserAddressEnd)
            {
                // Non-canonical or kernel half: nothing can be mapped there (and the table indices would alias).
                LeaveSection();
                _faultCpu.Counters.Add(VmEvent.PageFault);
                _faultCpu.Counters.Add(VmEvent.SegvMapErr);
                _lastOutcome = AccessOutcome.SegvMapErr;
                return null;
            }
            if (table.WalkLockless(address, out PteLocation at, out ulong pte) == WalkStatus.Ok && Pte.Permits(pte, kind))
            {
                _mm.Probes.Hit(ProbePoint.TlbMissWalked);
                bool dirty = kind == AccessKind.Write;
                if (!table.TrySetAccessedDirty(at.PteTable, at.PteIndex, pte, dirty))
                {
                    continue;
                }
                pte |= Pte.Accessed | (dirty ? Pte.Dirty : 0);
                _mm.Probes.Hit(ProbePoint.TlbFillBeforeInsert);
                // An arena frame, or host memory mapped with MapHostMemory (the hit path then reads either alike).
                nint host = (nint)_mm.Memory.PageAddress(Pte.Frame(pte));
                _tlb.Fill(page, pte, host);
                _faultCpu.Counters.Add(VmEvent.TlbFill);
                return (byte*)host + (address & PageOffsetMask);
            }
            LeaveSection();
            AccessOutcome outcome = FaultRouter.Fault(_mm, _faultCpu, address, kind);
            if (_faultCpu.TakeWatchedWrite(out ulong watched))
            {
                // Outside every lock and read section, before the store is retried: the watch learns of the write
                // before it lands.
                AddressSpace.WriteWatches.Find(watched)?.Notify(address, this);
            }
            if (outcome != AccessOutcome.Ok)
            {
                _lastOutcome = outcome;
                return null;
            }
            if (++faults > FaultLivelockLimit)
            {
                throw new InvalidOperationException($"fault at 0x{address:x} resolved {faults} times without the access succeeding");
            }
            // A fault that was in flight when the address space began its teardown finished with the arena alive
            // (the teardown waits for this claim); the access it was for is refused like any later one.
            if (_mm.IsExiting)
            {
                ThrowAddressSpaceDisposed();
            }
            _reader.Enter();
        }
    }

    // The shootdown: invalidate only the pages of the bumps missed since the TLB's generation when there are few and
    // small ones, else flush everything.
    private void CatchUp(long generation)
    {
        const long MaxBumps = 8;
        const ulong MaxPages = 32;
        bool full = generation - _tlbGeneration > MaxBumps;
        for (long g = _tlbGeneration + 1; !full && g <= generation; g++)
        {
            full = !_mm.Tlb.TryGetRange(g, out ulong first, out ulong end) || end - first > MaxPages;
            for (ulong page = first; !full && page < end; page++)
            {
                _tlb.Invalidate(page);
            }
        }
        if (full)
        {
            _tlb.Flush();
            _faultCpu.Counters.Add(VmEvent.TlbFlush);
        }
        else
        {
            _faultCpu.Counters.Add(VmEvent.TlbRangeFlush);
        }
        _tlbGeneration = generation;
        if (_scopeOpen)
        {
            _scopeGeneration = generation;
        }
        _exitWord = _scopeOpen ? (generation << 1) | 1 : generation << 1;
        _reader.Observe(generation);
    }

    private AccessOutcome TryLoadSplit<T>(ulong address, AccessKind kind, out T value) where T : unmanaged
    {
        value = default;
        Span<byte> bytes = MemoryMarshal.AsBytes(new Span<T>(ref value));
        int done = 0;
        while (done < bytes.Length)
        {
            ulong at = address + (ulong)done;
            int chunk = (int)Math.Min((ulong)(bytes.Length - done), PageSize - (at & PageOffsetMask));
            byte* p = EnterTranslated(at, kind);
            if (p == null)
            {
                value = default;
                return _lastOutcome;
            }
            new ReadOnlySpan<byte>(p, chunk).CopyTo(bytes.Slice(done, chunk));
            ExitSection();
            done += chunk;
        }
        return AccessOutcome.Ok;
    }

    // Debug builds only (the call vanishes from Release builds, so the hit path stays as it is): a thread arriving
    // while another is inside this Cpu's slow path.
    [Conditional("DEBUG")]
    private void CheckNotInUseElsewhere()
    {
        int holder = _faultCpu.Claim.Holder;
        if (holder != 0 && holder != Environment.CurrentManagedThreadId)
        {
            ThrowUsedByAnotherThread();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowUsedByAnotherThread() =>
        throw new InvalidOperationException("a Cpu is used by one thread at a time");

    [MethodImpl(MethodImplOptions.NoInlining)]
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowAddressSpaceDisposed() => ObjectDisposedException.ThrowIf(true, AddressSpace);

    // Out of line, so the inlined fast paths carry no exception-building code or address-taken locals.
    [MethodImpl(MethodImplOptions.NoInlining)]
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private void ThrowFault(ulong address, AccessKind kind) => throw GuestAccessException.For(address, kind, _lastOutcome);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private T LoadAcrossPages<T>(ulong address, AccessKind kind) where T : unmanaged =>
        Check(TryLoadSplit(address, kind, out T value), address, kind, value);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void StoreAcrossPages<T>(ulong address, T value) where T : unmanaged
    {
        AccessOutcome outcome = TryWrite(address, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)), out ulong failedAt);
        if (outcome != AccessOutcome.Ok)
        {
            throw GuestAccessException.For(failedAt, AccessKind.Write, outcome);
        }
    }

    private static T Check<T>(AccessOutcome outcome, ulong address, AccessKind kind, T value) =>
        outcome == AccessOutcome.Ok ? value : throw GuestAccessException.For(address, kind, outcome);
}
