namespace Faultline;

/// <summary>
/// A read scope of a <see cref="Cpu"/> (<see cref="Cpu.EnterScope"/>): the Cpu's read section is held from the scope's
/// start to its end, so a TLB hit through the scope is a slot index, a tag compare and the access itself — no store
/// and no generation check, the model QEMU uses for its vCPUs, whose RCU read side spans many guest instructions and
/// which look for a flush request per block, not per access.
/// </summary>
/// <remarks>
/// <para>
/// What a scope obliges its thread to do: writers of the address space (munmap, mprotect, madvise, mremap, fork, a
/// copy-on-write fault that frees a page or replaces the zero page, <see cref="AddressSpace.Dispose"/>) wait for every
/// scope open on another thread to pass a quiescent point before they return. A scope passes one on
/// <see cref="QuiescentPoint"/>, when it ends, and on an access that misses its TLB (which catches up); a hit is not
/// one, since it reads nothing a writer changes. So a thread must call <see cref="QuiescentPoint"/> regularly (an
/// emulator: once per block of guest instructions, and on every backward branch of a loop that may spin), and end the
/// scope or call it before blocking, sleeping, or waiting for another guest thread; otherwise those writers wait until
/// it does, for ever if it never does. Until a writer returns, the scope may still read and write the old translation
/// (as a CPU may before its TLB-shootdown IPI arrives); after it returned, never. A writer called on the scope's own
/// thread does not wait: it flushes the scope's TLB itself.
/// </para>
/// <para>
/// Thread safety: used only by the thread that opened it, like its Cpu; the Cpu's plain accesses stay allowed inside
/// it. Disposal: <see cref="Dispose"/> ends the scope (a second call does nothing); an access through an ended scope, or
/// one of its copies, throws <see cref="ObjectDisposedException"/> while no newer scope of its Cpu is open (an ended
/// scope looks pages up in a TLB that never hits, which keeps the hit path check-free and is all safety needs).
/// Disposing the Cpu ends its scope.
/// </para>
/// </remarks>
public readonly unsafe struct CpuScope : IDisposable
{
    private const ulong PageOffsetMask = PageGeometry.PageOffsetMask;
    private const int PageSize = PageGeometry.PageSize;

    private readonly Cpu _cpu;
    private readonly long _id;

    internal CpuScope(Cpu cpu, long id)
    {
        _cpu = cpu;
        _id = id;
    }

    /// <summary>The Cpu this scope belongs to.</summary>
    public Cpu Cpu => _cpu;

    /// <summary>Reads a value; throws <see cref="SegmentationFaultException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Load<T>(ulong address) where T : unmanaged
    {
        Cpu cpu = _cpu;
        if (cpu.HitInScope(address, AccessKind.Read, sizeof(T), out byte* p))
        {
            return Unsafe.ReadUnaligned<T>(p);
        }
        return cpu.LoadInScopeSlow<T>(address, _id);
    }

    /// <summary>Reads a value, returning the outcome instead of throwing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryLoad<T>(ulong address, out T value) where T : unmanaged
    {
        Cpu cpu = _cpu;
        if (cpu.HitInScope(address, AccessKind.Read, sizeof(T), out byte* p))
        {
            value = Unsafe.ReadUnaligned<T>(p);
            return AccessOutcome.Ok;
        }
        return cpu.TryLoadInScopeSlow(address, _id, out value);
    }

    /// <summary>Writes a value; throws <see cref="SegmentationFaultException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<T>(ulong address, T value) where T : unmanaged
    {
        Cpu cpu = _cpu;
        if (cpu.HitInScope(address, AccessKind.Write, sizeof(T), out byte* p))
        {
            Unsafe.WriteUnaligned(p, value);
            return;
        }
        cpu.StoreInScopeSlow(address, value, _id);
    }

    /// <summary>Writes a value, returning the outcome.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryStore<T>(ulong address, T value) where T : unmanaged
    {
        Cpu cpu = _cpu;
        if (cpu.HitInScope(address, AccessKind.Write, sizeof(T), out byte* p))
        {
            Unsafe.WriteUnaligned(p, value);
            return AccessOutcome.Ok;
        }
        return cpu.TryStoreInScopeSlow(address, value, _id);
    }

    // Zero-copy spans. Why the frame under a span cannot be freed and reused while the span is valid: every writer that
    // takes a translation away (munmap's zap, mprotect, madvise, a copy-on-write fault, mremap, fork's write-protect)
    // drops the frame's mapping under the PTE lock but its reference (put_page) only in MmuGather's deferred release,
    // which runs after RcuDomain.Synchronize: the grace period bumps the TLB generation and waits for every read section
    // that published an older one. This scope published "inside" at its TLB's generation when it opened, and nothing
    // republishes it until the scope ends, QuiescentPoint, or an access of this Cpu misses and catches up (or faults,
    // which leaves the section); so until one of those, the release waits and the frame keeps its reference. Hence the
    // validity rule below. The one writer that does not wait is one running on this scope's own thread (a grace period
    // flushes the caller's scope instead), so the thread holding a span must not unmap, protect, remap or fork meanwhile.
    // Races/ScopedSpanRaceTests stages munmap against a live span.

    /// <summary>
    /// Zero-copy access to the guest bytes [<paramref name="address"/>, + <paramref name="length"/>), which must lie
    /// within one page: the frame itself, translated for a write (write permission needed; copy-on-write is broken and
    /// the page dirtied, as by <see cref="Store{T}"/>). Valid until the scope ends, <see cref="QuiescentPoint"/> is
    /// called, or this Cpu makes any other access (scoped or plain: one that misses the TLB may pass a quiescent point),
    /// whichever comes first; until then no writer on another thread can free or reuse the frame (an unmap waits). A
    /// writer on this thread (unmap, protect, remap, fork) also ends it. A device region has no bytes to lend: SIGBUS.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, or the range crosses a page.</exception>
    /// <exception cref="GuestAccessException">The page cannot be written (SIGSEGV, SIGBUS, out of memory).</exception>
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    public Span<byte> GetSpan(ulong address, int length)
    {
        CheckWithinPage(address, length);
        byte* p = _cpu.TranslateInScope(address, AccessKind.Write, _id);
        if (p == null)
        {
            _cpu.ThrowFaultInScope(address, AccessKind.Write);
        }
        return new Span<byte>(p, length);
    }

    /// <summary><see cref="GetSpan"/>, returning the outcome instead of throwing on a fault (<paramref name="span"/> is empty then).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, or the range crosses a page.</exception>
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    public AccessOutcome TryGetSpan(ulong address, int length, out Span<byte> span)
    {
        CheckWithinPage(address, length);
        byte* p = _cpu.TranslateInScope(address, AccessKind.Write, _id);
        span = p == null ? default : new Span<byte>(p, length);
        return p == null ? _cpu.LastOutcome : AccessOutcome.Ok;
    }

    /// <summary>
    /// Zero-copy read access to [<paramref name="address"/>, + <paramref name="length"/>) within one page, translated for
    /// <paramref name="access"/> (<see cref="AccessKind.Read"/> or <see cref="AccessKind.Execute"/>). Valid as long as
    /// a span from <see cref="GetSpan"/> would be. Another Cpu's copy-on-write of the page afterwards is not seen
    /// through it (it keeps showing the frame it was given, as a stale TLB entry would).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, the range crosses a page,
    /// or <paramref name="access"/> is a write.</exception>
    /// <exception cref="GuestAccessException">The page cannot be read (SIGSEGV, SIGBUS, out of memory).</exception>
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    public ReadOnlySpan<byte> GetReadOnlySpan(ulong address, int length, AccessKind access = AccessKind.Read)
    {
        CheckWithinPage(address, length);
        CheckReadKind(access);
        byte* p = _cpu.TranslateInScope(address, access, _id);
        if (p == null)
        {
            _cpu.ThrowFaultInScope(address, access);
        }
        return new ReadOnlySpan<byte>(p, length);
    }

    /// <summary><see cref="GetReadOnlySpan"/>, returning the outcome instead of throwing on a fault (<paramref name="span"/> is empty then).</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="length"/> is not positive, the range crosses a page,
    /// or <paramref name="access"/> is a write.</exception>
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    public AccessOutcome TryGetReadOnlySpan(ulong address, int length, AccessKind access, out ReadOnlySpan<byte> span)
    {
        CheckWithinPage(address, length);
        CheckReadKind(access);
        byte* p = _cpu.TranslateInScope(address, access, _id);
        span = p == null ? default : new ReadOnlySpan<byte>(p, length);
        return p == null ? _cpu.LastOutcome : AccessOutcome.Ok;
    }

    private static void CheckWithinPage(ulong address, int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(length);
        if ((address & PageOffsetMask) + (ulong)length > PageSize)
        {
            throw new ArgumentOutOfRangeException(nameof(length), $"[0x{address:x}, +{length}) crosses a page");
        }
    }

    private static void CheckReadKind(AccessKind access)
    {
        if (access == AccessKind.Write)
        {
            throw new ArgumentOutOfRangeException(nameof(access), "a read-only span is for reads and fetches; use GetSpan to write");
        }
    }

    /// <summary>
    /// A quiescent point (<c>rcu_quiescent_state</c>): writers waiting for this scope may go on, and the scope's TLB
    /// catches up with what they changed. The scope stays open. Call it once per batch of accesses (a block of guest
    /// instructions), in any loop that may spin, and before the thread blocks: writers on other threads wait for it.
    /// Costs two stores and a load when no writer is waiting.
    /// </summary>
    public void QuiescentPoint() => _cpu.QuiescentPoint(_id);

    /// <summary>Ends the scope: the Cpu's read section is left. A second call, or one on a copy, does nothing.</summary>
    public void Dispose() => _cpu?.ExitScope(_id);
}
