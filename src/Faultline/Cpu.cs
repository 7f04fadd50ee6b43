using System.Numerics;
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
/// gets <see cref="InvalidOperationException"/>, and so does every slow path of another thread while a read scope
/// (<see cref="EnterScope"/>) is open; Debug builds also check on the TLB hit path.
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

    private readonly MemoryDescriptor _mm;
    private readonly FaultCpu _faultCpu;
    private readonly RcuReader _reader;
    private readonly SoftwareTlb _tlb;
    private readonly HugeTlb? _hugeTlb;  // _tlb.Huge: the 2 MiB translations a miss looks in before it walks
    private readonly long* _section;     // this Cpu's published read-section word (RcuReader), for the inlined hit path
    private readonly long* _generation;  // the address space's TLB generation
    private readonly TlbEntry* _tlbEntries;
    private readonly ulong _tlbOffsetMask; // SoftwareTlb.OffsetMask, for SoftwareTlb.SlotOf
    private long _tlbGeneration;         // the generation the TLB's contents are valid for
    private long _exitWord;              // what leaving an access publishes: "outside", or "inside" while a scope is open
    private bool _scopeOpen;
    private CpuScope? _openScope;        // the open scope, so an ended one is refused
    private AccessOutcome _lastOutcome;
    private bool _disposed;
    private ulong _devicePage;           // page + 1 of the last device access (0: none), of kind _deviceKind, valid while the
    private AccessKind _deviceKind;      // tree's version is _deviceVersion: the miss path then skips the fault that would
    private long _deviceVersion;         // only find the device (and that would check the access first: hence the kind)

    /// <summary>The per-thread fault state this Cpu runs its faults with (its memcg OOM state, counters, frames).</summary>
    internal FaultCpu FaultState => _faultCpu;

    internal Cpu(AddressSpace addressSpace, MemoryDescriptor mm)
    {
        AddressSpace = addressSpace;
        _mm = mm;
        _faultCpu = new FaultCpu(mm.Memory, mm.Rcu);
        _reader = _faultCpu.Reader;
        _tlb = new SoftwareTlb(addressSpace.Options.TlbEntries, addressSpace.Options.HugeTlbEntries);
        _hugeTlb = _tlb.Huge;
        _tlbGeneration = mm.Tlb.Current;
        _exitWord = _tlbGeneration << 1;
        _tlbEntries = _tlb.Entries;
        _tlbOffsetMask = _tlb.OffsetMask;
        _section = _reader.State;
        _generation = mm.Tlb.Address;
        _reader.OwnThreadShootdown = ShootDownOwnScope;
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
        if (EnterHit(address, AccessKind.Read, sizeof(T), out byte* p, out SectionExit exit))
        {
            T value = Unsafe.ReadUnaligned<T>(p);
            exit.Leave();
            return value;
        }
        return LoadSlow<T>(address);
    }

    /// <summary>Reads a value, returning the outcome instead of throwing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryLoad<T>(ulong address, out T value) where T : unmanaged
    {
        if (EnterHit(address, AccessKind.Read, sizeof(T), out byte* p, out SectionExit exit))
        {
            value = Unsafe.ReadUnaligned<T>(p);
            exit.Leave();
            return AccessOutcome.Ok;
        }
        return TryLoadSlow(address, out value);
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
            return TryLoadMiss(address, AccessKind.Execute, out value);
        }
        return TryLoadSplit(address, AccessKind.Execute, out value);
    }

    /// <summary>Writes a value; throws <see cref="SegmentationFaultException"/> or <see cref="GuestOutOfMemoryException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<T>(ulong address, T value) where T : unmanaged
    {
        if (EnterHit(address, AccessKind.Write, sizeof(T), out byte* p, out SectionExit exit))
        {
            Unsafe.WriteUnaligned(p, value);
            exit.Leave();
            return;
        }
        StoreSlow(address, value);
    }

    /// <summary>Writes a value, returning the outcome.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryStore<T>(ulong address, T value) where T : unmanaged
    {
        if (EnterHit(address, AccessKind.Write, sizeof(T), out byte* p, out SectionExit exit))
        {
            Unsafe.WriteUnaligned(p, value);
            exit.Leave();
            return AccessOutcome.Ok;
        }
        return TryStoreSlow(address, value);
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
                AccessOutcome missed = MissChunk(at, access, host + done, chunk, register: false);
                if (missed != AccessOutcome.Ok)
                {
                    return new GuestTransfer(done, missed, at);
                }
                done += chunk;
                continue;
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

    // The atomics below take any 1-, 2-, 4- or 8-byte integer type (byte, ushort, uint, ulong and the signed ones). They
    // are writes whatever they change (x86 locked instructions write back even an unchanged value): they need write
    // permission, break copy-on-write and dirty the page exactly like Store. An address not aligned to the value's size
    // is SIGBUS (AccessOutcome.BusError) before any translation: x86 would run a misaligned locked instruction (a split
    // lock if it crosses a cache line), but one crossing a page cannot be atomic over two frames translated one at a
    // time, the host's Interlocked makes no promise for misaligned addresses (ARM64 hosts fault on them), and Linux
    // with split_lock_detect=fatal sends SIGBUS for split locks too; an aligned value never crosses a page. On a
    // memory-mapped I/O region they are SIGBUS as well: a device sees loads and stores, not read-modify-writes.

    /// <summary>
    /// Atomic exchange (<c>xchg</c>) of the aligned value at <paramref name="address"/>; returns the old value. A write:
    /// needs write permission and breaks copy-on-write like <see cref="Store{T}"/>.
    /// </summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T Exchange<T>(ulong address, T value) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.Exchange, value, default);

    /// <summary><see cref="Exchange{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryExchange<T>(ulong address, T value, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.Exchange, value, default, out original);

    /// <summary>
    /// Atomic fetch-and-add (<c>lock xadd</c>, wrapping) of the aligned value at <paramref name="address"/>; returns the
    /// old value (unlike <see cref="Interlocked.Add(ref int, int)"/>, which returns the new one). Rules as <see cref="Exchange{T}"/>.
    /// </summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T FetchAdd<T>(ulong address, T value) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.Add, value, default);

    /// <summary><see cref="FetchAdd{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryFetchAdd<T>(ulong address, T value, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.Add, value, default, out original);

    /// <summary>Atomic fetch-and-AND (<c>lock and</c>); returns the old value. Rules as <see cref="Exchange{T}"/>.</summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T FetchAnd<T>(ulong address, T value) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.And, value, default);

    /// <summary><see cref="FetchAnd{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryFetchAnd<T>(ulong address, T value, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.And, value, default, out original);

    /// <summary>Atomic fetch-and-OR (<c>lock or</c>); returns the old value. Rules as <see cref="Exchange{T}"/>.</summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T FetchOr<T>(ulong address, T value) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.Or, value, default);

    /// <summary><see cref="FetchOr{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryFetchOr<T>(ulong address, T value, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.Or, value, default, out original);

    /// <summary>Atomic fetch-and-XOR (<c>lock xor</c>); returns the old value. Rules as <see cref="Exchange{T}"/>.</summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T FetchXor<T>(ulong address, T value) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.Xor, value, default);

    /// <summary><see cref="FetchXor{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryFetchXor<T>(ulong address, T value, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.Xor, value, default, out original);

    /// <summary>
    /// Atomic compare-and-exchange (<c>lock cmpxchg</c>) of the aligned value at <paramref name="address"/>: stores
    /// <paramref name="value"/> if the old value equals <paramref name="comparand"/>; returns the old value. A write even
    /// when the comparison fails, as on x86. Rules as <see cref="Exchange{T}"/>.
    /// </summary>
    /// <exception cref="SegmentationFaultException">SIGSEGV, or SIGBUS when misaligned or on a device region.</exception>
    /// <exception cref="NotSupportedException"><typeparamref name="T"/> is wider than 8 bytes.</exception>
    public T CompareExchange<T>(ulong address, T value, T comparand) where T : unmanaged, IBinaryInteger<T> =>
        Atomic(address, AtomicOperation.CompareExchange, value, comparand);

    /// <summary><see cref="CompareExchange{T}"/>, returning the outcome; <paramref name="original"/> is the old value on success.</summary>
    public AccessOutcome TryCompareExchange<T>(ulong address, T value, T comparand, out T original) where T : unmanaged, IBinaryInteger<T> =>
        TryAtomic(address, AtomicOperation.CompareExchange, value, comparand, out original);

    private T Atomic<T>(ulong address, AtomicOperation operation, T operand, T comparand) where T : unmanaged, IBinaryInteger<T> =>
        Check(TryAtomic(address, operation, operand, comparand, out T original), address, AccessKind.Write, original);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private AccessOutcome TryAtomic<T>(ulong address, AtomicOperation operation, T operand, T comparand, out T original)
        where T : unmanaged, IBinaryInteger<T>
    {
        original = default;
        if (sizeof(T) > sizeof(ulong))
        {
            throw new NotSupportedException($"atomics are 1, 2, 4 or 8 bytes wide, not {sizeof(T)}");
        }
        if ((address & (ulong)(sizeof(T) - 1)) != 0)
        {
            return AccessOutcome.BusError;
        }
        byte* p = EnterTranslated(address, AccessKind.Write);
        if (p == null)
        {
            return _lastOutcome;
        }
        original = GuestAtomics.Apply(p, operation, operand, comparand);
        ExitSection();
        return AccessOutcome.Ok;
    }

    /// <summary>
    /// Sets <paramref name="length"/> bytes from <paramref name="address"/> to <paramref name="value"/> (<c>memset</c>),
    /// one translation per page; a device region gets the bytes through its span form. Throws at the first page that
    /// cannot be written; the pages before it keep the value.
    /// </summary>
    /// <exception cref="GuestAccessException">An unresolvable fault; its address is the first byte not written.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public void Fill(ulong address, int length, byte value)
    {
        GuestTransfer transfer = FillPartial(address, length, value);
        if (!transfer.IsComplete)
        {
            throw GuestAccessException.For(transfer.FaultAddress, AccessKind.Write, transfer.Outcome);
        }
    }

    /// <summary>
    /// <see cref="Fill"/> that stops at the first page that cannot be written and reports the bytes set before it and the
    /// failing address, as <see cref="WritePartial"/> does.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is negative.</exception>
    public GuestTransfer FillPartial(ulong address, int length, byte value)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        int done = 0;
        while (done < length)
        {
            ulong at = address + (ulong)done;
            int chunk = (int)Math.Min((ulong)(length - done), PageSize - (at & PageOffsetMask));
            byte* guest = EnterTranslated(at, AccessKind.Write);
            if (guest == null)
            {
                AccessOutcome missed = FillMiss(at, chunk, value);
                if (missed != AccessOutcome.Ok)
                {
                    return new GuestTransfer(done, missed, at);
                }
            }
            else
            {
                new Span<byte>(guest, chunk).Fill(value);
                ExitSection();
            }
            done += chunk;
        }
        return new GuestTransfer(done, AccessOutcome.Ok, 0);
    }

    /// <summary>
    /// True when every page of [<paramref name="address"/>, + <paramref name="length"/>) lies in a mapping that allows
    /// <paramref name="access"/> (an access that would not end in SIGSEGV, as <c>access_error</c> judges it; a
    /// write-only mapping is readable, as on x86). Takes no fault, allocates nothing and holds no lock: the answer is
    /// one published version of the mapping tree, so it may be stale by the time the caller acts on it. An empty range
    /// is mapped; one that wraps past the top of the address space is not. A device region counts as mapped.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The Cpu or its address space is disposed.</exception>
    public bool IsMapped(ulong address, ulong length, AccessKind access)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_mm.IsExiting)
        {
            ThrowAddressSpaceDisposed();
        }
        ulong end = address + length;
        if (end < address)
        {
            return false;
        }
        // A walk section: the version read below, and its VMAs, are not reused until it ends (RcuRecycler).
        _reader.EnterWalk(_mm.Rcu.WalkEpoch);
        try
        {
            VmaTreeNode? version = _mm.Tree.Published;
            for (ulong at = address & ~PageOffsetMask; at < end;)
            {
                Vma? vma = VmaTree.Containing(version, at);
                if (vma is null || AccessCheck.IsError(vma.Flags, access))
                {
                    return false;
                }
                at = vma.End;
            }
            return true;
        }
        finally
        {
            _reader.ExitWalk();
        }
    }

    /// <summary>
    /// Opens a read scope: this Cpu's read section stays entered until the scope is disposed, so the TLB-hit accesses
    /// of <see cref="CpuScope"/> store nothing and check no generation (the model QEMU uses for its vCPUs). Plain
    /// accesses of this Cpu stay allowed inside it. Writers on other threads then wait for the scope's quiescent points:
    /// see <see cref="CpuScope"/> for what a scope obliges its thread to do. Allocates the scope object.
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
        int thread = CurrentThread.Id;
        if (!claim.TryEnter(thread))
        {
            ThrowUsedByAnotherThread();
        }
        try
        {
            if (_mm.IsExiting)
            {
                ThrowAddressSpaceDisposed();
            }
            _scopeOpen = true;
            _exitWord = (_tlbGeneration << 1) | 1;
            _reader.ScopeThread = thread;
            if (!_reader.HasOpenedScopes)
            {
                // Once per Cpu, a full fence between the mark and the section's generation read below; pairs with the
                // Interlocked bump of RcuDomain.ShootDown before it reads the mark: a writer that finds no mark is
                // seen by the catch-up. Later scopes need none: the mark stays.
                _reader.HasOpenedScopes = true;
                Interlocked.MemoryBarrier();
            }
            EnterCaughtUp();
            _openScope = new CpuScope(this, _tlbEntries, _tlbOffsetMask);
            return _openScope;
        }
        finally
        {
            claim.Exit();
        }
    }

    // The rest of a scoped load, store and their Try forms after CpuScope's hit path said no: a page-crossing access is split by
    // the plain paths, anything else is translated slowly with the scope's section held throughout.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal T LoadInScopeSlow<T>(ulong address, CpuScope scope) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            return LoadAcrossPages<T>(address, AccessKind.Read);
        }
        byte* p = TranslateInScopeSlow(address, AccessKind.Read, scope);
        return p == null ? LoadMiss<T>(address, AccessKind.Read) : Unsafe.ReadUnaligned<T>(p);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal AccessOutcome TryLoadInScopeSlow<T>(ulong address, CpuScope scope, out T value) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            return TryLoadSplit(address, AccessKind.Read, out value);
        }
        byte* p = TranslateInScopeSlow(address, AccessKind.Read, scope);
        if (p == null)
        {
            return TryLoadMiss(address, AccessKind.Read, out value);
        }
        value = Unsafe.ReadUnaligned<T>(p);
        return AccessOutcome.Ok;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void StoreInScopeSlow<T>(ulong address, T value, CpuScope scope) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            StoreAcrossPages(address, value);
            return;
        }
        byte* p = TranslateInScopeSlow(address, AccessKind.Write, scope);
        if (p == null)
        {
            StoreMiss(address, value);
            return;
        }
        Unsafe.WriteUnaligned(p, value);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal AccessOutcome TryStoreInScopeSlow<T>(ulong address, T value, CpuScope scope) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            return TryStore(address, value);
        }
        byte* p = TranslateInScopeSlow(address, AccessKind.Write, scope);
        if (p == null)
        {
            return TryStoreMiss(address, value);
        }
        Unsafe.WriteUnaligned(p, value);
        return AccessOutcome.Ok;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal byte* TranslateInScopeSlow(ulong address, AccessKind kind, CpuScope scope)
    {
        CheckScope(scope);
        // Entered with the section held (by the scope), as the plain slow path is; it returns with it held.
        return EnterTranslatedSlow(address, kind);
    }

    /// <summary>
    /// <c>rcu_quiescent_state</c> for an open scope: lets writers waiting for this Cpu's section go on, and catches the
    /// TLB up with what they changed. The scope stays open.
    /// </summary>
    internal void QuiescentPoint(CpuScope scope)
    {
        CheckScope(scope);
        LeaveSection();
        ReenterScope();
    }

    // A scope's section comes back after it was left (a quiescent point, a fault): entered and caught up, or, when the
    // address space is going, left for good with the TLB emptied, so the scope's hits miss and its slow path refuses.
    private void ReenterScope()
    {
        if (_mm.IsExiting)
        {
            _tlb.Flush();
            return;
        }
        EnterCaughtUp();
    }

    // rcu_read_lock for a section whose hits do not check the generation (a scope's): publishes "inside at the TLB's
    // generation", then reads the current one (acquire) and catches up if it moved, which flushes before re-publishing.
    // So the word never shows a generation the TLB has not caught up to. The store-then-load needs no fence: a writer
    // whose process-wide barrier came before the store sees the bump read here; one whose barrier came after it sees
    // the store and waits (RcuDomain.Synchronize's remarks).
    private void EnterCaughtUp()
    {
        Volatile.Write(ref *_section, (_tlbGeneration << 1) | 1);
        long current = Volatile.Read(ref *_generation);
        if (current != _tlbGeneration)
        {
            CatchUp(current);
        }
    }

    // A writer on this Cpu's own thread found the scope's section older than its bump (RcuDomain.Synchronize): it cannot
    // wait for the scope (the thread is in the writer, not between the scope's accesses), and the scope's hits will not
    // notice the bump, so the TLB catches up here, before the writer frees anything. Nothing of this Cpu runs meanwhile.
    private void ShootDownOwnScope(long generation)
    {
        if (_scopeOpen && _reader.IsInside && generation > _tlbGeneration)
        {
            CatchUp(generation);
        }
    }

    /// <summary>Ends <paramref name="scope"/> if it is the open one.</summary>
    internal void ExitScope(CpuScope scope)
    {
        if (scope == _openScope)
        {
            CheckScopeThread();
            CloseScope();
        }
    }

    // Every slow path of a scope (a miss, a quiescent point, its end): an ended scope is refused, and so is a scope used
    // from a thread other than the one that opened it, before that thread changes the section word or the TLB the
    // owner's hits read. The hits themselves do not check (CpuScope.Hit).
    private void CheckScope(CpuScope scope)
    {
        if (scope != _openScope)
        {
            ThrowScopeEnded();
        }
        CheckScopeThread();
    }

    // A scope ties its Cpu to the thread that opened it until it ends: another thread's slow path (a miss, a quiescent
    // point, closing the scope, disposing the Cpu) would flush the TLB or leave the section under the owner's hits.
    // ScopeThread is written by the owner only; another thread never reads its own id there.
    private void CheckScopeThread()
    {
        if (_scopeOpen && _reader.ScopeThread != CurrentThread.Id)
        {
            ThrowScopeOpenElsewhere();
        }
    }

    private void CloseScope()
    {
        if (!_scopeOpen)
        {
            return;
        }
        _scopeOpen = false;
        _openScope!.End();
        _openScope = null;
        _exitWord = _tlbGeneration << 1;
        _reader.ScopeThread = 0;
        LeaveSection();
    }

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
    /// <exception cref="InvalidOperationException">Another thread is inside this Cpu's slow path, or holds its open scope.</exception>
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
            CheckScopeThread();
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
        // rcu_read_lock inlined (RcuReader's encoding): "inside, having seen the TLB's generation"; then the check
        // that the generation has not moved since. A mismatch goes to the slow path, which flushes and re-publishes.
        long seen = _tlbGeneration;
        Volatile.Write(ref *_section, (seen << 1) | 1);
        if (Volatile.Read(ref *_generation) == seen)
        {
            TlbEntry* slot = SoftwareTlb.SlotOf(address, _tlbOffsetMask, _tlbEntries);
            if (TlbEntry.TagOf(slot, kind) == TlbEntry.KeyFor(address, 1))
            {
                return (byte*)(address + (ulong)slot->Addend);
            }
        }
        return EnterTranslatedSlow(address, kind);
    }

    // The plain hit path of an access of `size` bytes: enters the read section and, if the TLB's generation is current
    // and its slot translates the whole access for `kind`, gives the host address (the caller then accesses it and
    // leaves through `exit`). Otherwise false, with the section still entered: the caller's slow path takes it from
    // there. Two stores (enter, exit), the generation compare and one tag compare that also rejects a page crossing.
    // Every field is read before the first store: the JIT assumes a store through a raw pointer may change them and
    // would read them again after it. None changes meanwhile (only this thread's slow paths write them).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool EnterHit(ulong address, AccessKind kind, int size, out byte* host, out SectionExit exit)
    {
        CheckNotInUseElsewhere();
        long seen = _tlbGeneration;
        long* section = _section;
        long* generation = _generation;
        exit = new SectionExit(section, _exitWord);
        TlbEntry* slot = SoftwareTlb.SlotOf(address, _tlbOffsetMask, _tlbEntries);
        // rcu_read_lock inlined (RcuReader's encoding), then the acquire read of the generation, paired with the
        // writer's Interlocked bump: a writer's scan either sees this section or this read sees its bump. The slot is
        // read after it.
        Volatile.Write(ref *section, seen * 2 + 1);
        if (Volatile.Read(ref *generation) == seen && TlbEntry.TagOf(slot, kind) == TlbEntry.KeyFor(address, size))
        {
            host = (byte*)(address + (ulong)slot->Addend);
            return true;
        }
        host = null;
        return false;
    }

    // The rest of a plain load, store and their Try forms after EnterHit said no, with the section entered: an access
    // crossing a page is split (leaving the section first), anything else is translated slowly (walk, fill, fault).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private T LoadSlow<T>(ulong address) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            ExitSection();
            return LoadAcrossPages<T>(address, AccessKind.Read);
        }
        byte* p = EnterTranslatedSlow(address, AccessKind.Read);
        if (p == null)
        {
            return LoadMiss<T>(address, AccessKind.Read);
        }
        T value = Unsafe.ReadUnaligned<T>(p);
        ExitSection();
        return value;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessOutcome TryLoadSlow<T>(ulong address, out T value) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            ExitSection();
            return TryLoadSplit(address, AccessKind.Read, out value);
        }
        byte* p = EnterTranslatedSlow(address, AccessKind.Read);
        if (p == null)
        {
            return TryLoadMiss(address, AccessKind.Read, out value);
        }
        value = Unsafe.ReadUnaligned<T>(p);
        ExitSection();
        return AccessOutcome.Ok;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void StoreSlow<T>(ulong address, T value) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            ExitSection();
            StoreAcrossPages(address, value);
            return;
        }
        byte* p = EnterTranslatedSlow(address, AccessKind.Write);
        if (p == null)
        {
            StoreMiss(address, value);
            return;
        }
        Unsafe.WriteUnaligned(p, value);
        ExitSection();
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessOutcome TryStoreSlow<T>(ulong address, T value) where T : unmanaged
    {
        if (CrossesPage(address, sizeof(T)))
        {
            ExitSection();
            return TryWrite(address, MemoryMarshal.AsBytes(new ReadOnlySpan<T>(in value)));
        }
        byte* p = EnterTranslatedSlow(address, AccessKind.Write);
        if (p == null)
        {
            return TryStoreMiss(address, value);
        }
        Unsafe.WriteUnaligned(p, value);
        ExitSection();
        return AccessOutcome.Ok;
    }

    private static bool CrossesPage(ulong address, int size) => (address & PageOffsetMask) > (ulong)(PageSize - size);

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
        if (_scopeOpen && _reader.ScopeThread != CurrentThread.Id)
        {
            // A plain access from another thread while a scope is open: refused before it can flush the owner's TLB.
            ExitSection();
            ThrowScopeOpenElsewhere();
        }
        UseClaim claim = _faultCpu.Claim;
        if (!claim.TryEnter(CurrentThread.Id))
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
            // A scope stays inside its section whatever the access did (a fault that failed or threw left it), caught up
            // since its hits do not check, unless the address space is going: its teardown must not wait for this Cpu.
            if (_scopeOpen && !_reader.IsInside)
            {
                ReenterScope();
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
            if (_hugeTlb is not null && _hugeTlb.TryGet(page, kind, out ulong cached))
            {
                // The block's 2 MiB translation, caught up with every bump above: as current as a 4 KiB hit (HugeTlb).
                nint subpage = (nint)_mm.Memory.PageAddress(Pte.Frame(cached));
                _tlb.Fill(page, cached, subpage);
                _faultCpu.Counters.Add(VmEvent.TlbHugeFill);
                return (byte*)subpage + (address & PageOffsetMask);
            }
            WalkStatus walked = table.WalkLockless(address, out PteLocation at, out ulong pte);
            if ((walked == WalkStatus.Ok || walked == WalkStatus.HugePmd) && Pte.Permits(pte, kind))
            {
                _mm.Probes.Hit(ProbePoint.TlbMissWalked);
                bool dirty = kind == AccessKind.Write;
                // A huge PMD fills a 4 KiB entry; its accessed/dirty bits live in the PMD.
                if (walked == WalkStatus.HugePmd
                    ? !table.TrySetAccessedDirtyPmd(at, at.PmdEntry, dirty)
                    : !table.TrySetAccessedDirty(at.PteTable, at.PteIndex, pte, dirty))
                {
                    continue;
                }
                pte |= Pte.Accessed | (dirty ? Pte.Dirty : 0);
                _mm.Probes.Hit(ProbePoint.TlbFillBeforeInsert);
                if (walked == WalkStatus.HugePmd)
                {
                    // The PMD as the CAS above left it; cached only now, inside the same section as the 4 KiB fill.
                    _hugeTlb?.Fill(page, at.PmdEntry | Pte.Accessed | (dirty ? Pte.Dirty : 0));
                }
                // An arena frame, or host memory mapped with MapHostMemory (the hit path then reads either alike).
                nint host = (nint)_mm.Memory.PageAddress(Pte.Frame(pte));
                _tlb.Fill(page, pte, host);
                _faultCpu.Counters.Add(VmEvent.TlbFill);
                return (byte*)host + (address & PageOffsetMask);
            }
            LeaveSection();
            if ((page + 1 == _devicePage && kind == _deviceKind && _mm.Tree.PublishedVersion == _deviceVersion)
                || (_mm.HasDeviceMappings && IsDeviceAccess(address, kind)))
            {
                // The same device VMA as last time (no version published since), or a device VMA in the published tree:
                // its fault would only find the device without the access's bytes (this path has none) and answer SIGBUS,
                // so go straight to the device access (MissChunk), whose one fault looks it up again under its lock.
                _faultCpu.Device.MarkReached();
                _lastOutcome = AccessOutcome.BusError;
                return null;
            }
            AccessOutcome outcome = RaiseFault(address, kind);
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

    // The fault of the miss path, out of line: inlined (as profile-guided inlining does), its frame would make every
    // TLB miss that only walks zero a few hundred bytes of stack.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessOutcome RaiseFault(ulong address, AccessKind kind) => FaultRouter.Fault(_mm, _faultCpu, address, kind);

    // The shootdown: invalidate only the pages of the bumps missed since the TLB's generation when there are few and
    // small ones, else flush everything. Either drops the cached 2 MiB blocks of those pages too (SoftwareTlb), and
    // runs before any miss looks in them: that is what makes a HugeTlb hit as safe as a 4 KiB hit.
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
                AccessOutcome missed;
                fixed (byte* host = bytes)
                {
                    missed = MissChunk(at, kind, host + done, chunk, register: false);
                }
                if (missed != AccessOutcome.Ok)
                {
                    value = default;
                    return missed;
                }
                done += chunk;
                continue;
            }
            new ReadOnlySpan<byte>(p, chunk).CopyTo(bytes.Slice(done, chunk));
            ExitSection();
            done += chunk;
        }
        return AccessOutcome.Ok;
    }

    // The cold branch of a load or fetch within a page: a device region is read through its device (a register access
    // for 1, 2, 4 and 8 bytes), anything else was a fault.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal T LoadMiss<T>(ulong address, AccessKind kind) where T : unmanaged =>
        Check(TryLoadMiss(address, kind, out T value), address, kind, value);

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal AccessOutcome TryLoadMiss<T>(ulong address, AccessKind kind, out T value) where T : unmanaged
    {
        T read = default;
        AccessOutcome outcome = MissChunk(address, kind, (byte*)&read, sizeof(T), IsRegisterSize(sizeof(T)));
        value = outcome == AccessOutcome.Ok ? read : default;
        return outcome;
    }

    // The cold branch of a store within a page: a device region is written through its device, anything else was a fault.
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void StoreMiss<T>(ulong address, T value) where T : unmanaged
    {
        AccessOutcome outcome = MissChunk(address, AccessKind.Write, (byte*)&value, sizeof(T), IsRegisterSize(sizeof(T)));
        if (outcome != AccessOutcome.Ok)
        {
            throw GuestAccessException.For(address, AccessKind.Write, outcome);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal AccessOutcome TryStoreMiss<T>(ulong address, T value) where T : unmanaged =>
        MissChunk(address, AccessKind.Write, (byte*)&value, sizeof(T), IsRegisterSize(sizeof(T)));

    private static bool IsRegisterSize(int size) => size is 1 or 2 or 4 or 8;

    // A fill's page that missed: the bytes come from a buffer of the value (only a device or a changed mapping gets here).
    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessOutcome FillMiss(ulong at, int chunk, byte value)
    {
        byte* bytes = stackalloc byte[chunk];
        new Span<byte>(bytes, chunk).Fill(value);
        return MissChunk(at, AccessKind.Write, bytes, chunk, register: false);
    }

    // After EnterTranslated failed at `at`: when the fault found a device region, moves `length` bytes (within one
    // page) between `host` and the device; when the region turned into memory meanwhile, through the TLB like any
    // access; else the fault's outcome stands.
    private AccessOutcome MissChunk(ulong at, AccessKind kind, byte* host, int length, bool register)
    {
        while (_lastOutcome == AccessOutcome.BusError && _faultCpu.Device.Reached)
        {
            AccessOutcome outcome = DeviceTransfer(at, kind, host, length, register, out bool completed);
            if (completed || outcome != AccessOutcome.Ok)
            {
                return outcome;
            }
            byte* guest = EnterTranslated(at, kind);
            if (guest != null)
            {
                if (kind == AccessKind.Write)
                {
                    Buffer.MemoryCopy(host, guest, length, length);
                }
                else
                {
                    Buffer.MemoryCopy(guest, host, length, length);
                }
                ExitSection();
                return AccessOutcome.Ok;
            }
        }
        return _lastOutcome;
    }

    // The access to a device region: a fault with the request armed, whose path calls the device while it holds the
    // VMA in place (see DeviceRequest). Claimed like the slow path and outside the read section, since the callback
    // may block (a scope's section comes back before returning). `completed` is false when the fault found memory.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private AccessOutcome DeviceTransfer(ulong address, AccessKind kind, byte* host, int length, bool register, out bool completed)
    {
        UseClaim claim = _faultCpu.Claim;
        if (!claim.TryEnter(Environment.CurrentManagedThreadId))
        {
            ThrowUsedByAnotherThread();
        }
        DeviceRequest request = _faultCpu.Device;
        try
        {
            // Read after the claim store (UseClaim's pairing with MemoryDescriptor.Dispose).
            if (_mm.IsExiting)
            {
                ThrowAddressSpaceDisposed();
            }
            LeaveSection();
            request.Arm(address, host, length, register);
            // Read before the lookup: an edit during the access publishes a newer version, and the hint never matches.
            long version = _mm.Tree.PublishedVersion;
            AccessOutcome outcome = FaultRouter.Fault(_mm, _faultCpu, address, kind);
            completed = request.Completed;
            _devicePage = completed ? (address >> PageGeometry.PageShift) + 1 : 0;
            _deviceKind = kind;
            _deviceVersion = version;
            _lastOutcome = outcome;
            return outcome;
        }
        finally
        {
            request.Disarm();
            if (_scopeOpen && !_reader.IsInside)
            {
                ReenterScope();
            }
            claim.Exit();
        }
    }

    // Debug builds only (the call vanishes from Release builds, so the hit path stays as it is): a thread arriving
    // while another is inside this Cpu's slow path.
    [Conditional("DEBUG")]
    internal void CheckNotInUseElsewhere()
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
    private static void ThrowScopeEnded() => ObjectDisposedException.ThrowIf(true, typeof(CpuScope));

    [MethodImpl(MethodImplOptions.NoInlining)]
    [System.Diagnostics.CodeAnalysis.DoesNotReturn]
    private static void ThrowScopeOpenElsewhere() =>
        throw new InvalidOperationException("a scope of this Cpu is open on another thread");

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

    // Whether the published tree maps `address` with a device that allows `kind`: a lockless lookup in a walk section
    // (the VMA read is not reused meanwhile). Only a hint; the device access's fault decides under the VMA's lock. A
    // refused access takes the ordinary fault, whose access check answers SIGSEGV before anything touches the device.
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool IsDeviceAccess(ulong address, AccessKind kind)
    {
        _reader.EnterWalk(_mm.Rcu.WalkEpoch);
        try
        {
            return _mm.Tree.LookupLockless(address) is { Backing: Backing.DeviceBacking } vma && !AccessCheck.IsError(vma.Flags, kind);
        }
        finally
        {
            _reader.ExitWalk();
        }
    }
}
