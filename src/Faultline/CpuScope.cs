using Faultline.Paging;

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
/// Thread safety: used only by the thread that opened it, and its Cpu too while it is open; the Cpu's plain accesses
/// stay allowed inside it on that thread. From another thread, an access through it that misses,
/// <see cref="QuiescentPoint"/>, <see cref="Dispose"/>, a plain access of the Cpu that misses and
/// <see cref="Cpu.Dispose"/> throw <see cref="InvalidOperationException"/> before they touch the TLB or the section;
/// hits are not checked (as a plain hit is not). Disposal: <see cref="Dispose"/> ends the scope (a second call does
/// nothing); any later access through it throws <see cref="ObjectDisposedException"/>, even while a newer scope of its
/// Cpu is open (an ended scope looks pages up in a TLB that never hits, which keeps the hit path check-free). Disposing
/// the Cpu ends its scope. Each <see cref="Cpu.EnterScope"/> allocates one small object.
/// </para>
/// </remarks>
public sealed unsafe class CpuScope : IDisposable
{
    private const ulong PageOffsetMask = PageGeometry.PageOffsetMask;
    private const int PageSize = PageGeometry.PageSize;

    private readonly Cpu _cpu;
    // The Cpu's TLB slots and offset mask (SoftwareTlb.SlotOf) while the scope is open; SoftwareTlb.NeverHits and 0 once it ended, so an access
    // through it misses and its slow path refuses it. Written by the owner thread only. A class rather than a struct:
    // the JIT keeps a using'd struct in memory (the finally takes its address) and reloads it on every access.
    private TlbEntry* _entries;
    private ulong _offsetMask;

    internal CpuScope(Cpu cpu, TlbEntry* entries, ulong offsetMask)
    {
        _cpu = cpu;
        _entries = entries;
        _offsetMask = offsetMask;
    }

    /// <summary>The Cpu this scope belongs to.</summary>
    public Cpu Cpu => _cpu;

    /// <summary>Reads a value; throws <see cref="SegmentationFaultException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public T Load<T>(ulong address) where T : unmanaged
    {
        if (Hit(address, AccessKind.Read, sizeof(T), out byte* p))
        {
            return Unsafe.ReadUnaligned<T>(p);
        }
        return _cpu.LoadInScopeSlow<T>(address, this);
    }

    /// <summary>Reads a value, returning the outcome instead of throwing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryLoad<T>(ulong address, out T value) where T : unmanaged
    {
        if (Hit(address, AccessKind.Read, sizeof(T), out byte* p))
        {
            value = Unsafe.ReadUnaligned<T>(p);
            return AccessOutcome.Ok;
        }
        return _cpu.TryLoadInScopeSlow(address, this, out value);
    }

    /// <summary>Writes a value; throws <see cref="SegmentationFaultException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<T>(ulong address, T value) where T : unmanaged
    {
        if (Hit(address, AccessKind.Write, sizeof(T), out byte* p))
        {
            Unsafe.WriteUnaligned(p, value);
            return;
        }
        _cpu.StoreInScopeSlow(address, value, this);
    }

    /// <summary>Writes a value, returning the outcome.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryStore<T>(ulong address, T value) where T : unmanaged
    {
        if (Hit(address, AccessKind.Write, sizeof(T), out byte* p))
        {
            Unsafe.WriteUnaligned(p, value);
            return AccessOutcome.Ok;
        }
        return _cpu.TryStoreInScopeSlow(address, value, this);
    }

    // The hit path of a load or store of `size` bytes: a slot index, one tag compare (which also rejects a page
    // crossing) and no store, no generation check. Why a stale slot cannot reach a reused frame: the scope holds its
    // Cpu's section "inside at g" (published by Cpu.EnterCaughtUp, after which the TLB held nothing older than g); a
    // writer that removes a translation bumps past g and waits in RcuDomain.Synchronize until that word changes, which
    // it does only at a quiescent point, a miss (Cpu.CatchUp) or the scope's end, each of which flushes what the bump
    // invalidated before the next hit (or ends the hits). A writer on this thread flushes instead of waiting
    // (Cpu.ShootDownOwnScope). The fields read here are the owner's, written on this thread.
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Hit(ulong address, AccessKind kind, int size, out byte* host)
    {
        _cpu.CheckNotInUseElsewhere();
        TlbEntry* slot = SoftwareTlb.SlotOf(address, _offsetMask, _entries);
        if (TlbEntry.TagOf(slot, kind) == TlbEntry.KeyFor(address, size))
        {
            host = (byte*)(address + (ulong)slot->Addend);
            return true;
        }
        host = null;
        return false;
    }

    // The spans' translation: the hit path for the first byte's page, else the Cpu's slow path (walk, fill, fault).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* Translate(ulong address, AccessKind kind) =>
        Hit(address, kind, 1, out byte* host) ? host : _cpu.TranslateInScopeSlow(address, kind, this);

    /// <summary>Ends the hits of this scope (its Cpu closed it).</summary>
    internal void End()
    {
        _entries = SoftwareTlb.NeverHits;
        _offsetMask = 0;
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
        byte* p = Translate(address, AccessKind.Write);
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
        byte* p = Translate(address, AccessKind.Write);
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
        byte* p = Translate(address, access);
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
        byte* p = Translate(address, access);
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
    /// <exception cref="ObjectDisposedException">The scope has ended.</exception>
    /// <exception cref="InvalidOperationException">Called on another thread than the one that opened the scope.</exception>
    public void QuiescentPoint() => _cpu.QuiescentPoint(this);

    /// <summary>Ends the scope: the Cpu's read section is left. A second call, or one on a copy, does nothing.</summary>
    /// <exception cref="InvalidOperationException">Called on another thread than the one that opened the scope.</exception>
    public void Dispose() => _cpu.ExitScope(this);
}
