namespace Faultline;

/// <summary>
/// A read scope of a <see cref="Cpu"/> (<see cref="Cpu.EnterScope"/>): the Cpu's read section is held from the scope's
/// start to its end, so a TLB hit through the scope is a generation compare, a tag compare and the access itself,
/// with no store — the model QEMU uses for its vCPUs, whose RCU read side spans many guest instructions.
/// </summary>
/// <remarks>
/// <para>
/// What a scope obliges its thread to do: writers of the address space (munmap, mprotect, fork, a copy-on-write
/// fault that frees a page, <see cref="AddressSpace.Dispose"/>) wait for every open scope to pass a quiescent point
/// before they free anything. A scope passes one on each access after such a writer started (the access misses its
/// hit path and catches up), on <see cref="QuiescentPoint"/>, and when it ends. So a thread must not sit in a scope
/// without accessing memory: end it, or call <see cref="QuiescentPoint"/>, before blocking, sleeping or running long
/// host-side work, or writers on other threads wait until it does. A writer called on the scope's own thread never
/// waits for that scope.
/// </para>
/// <para>
/// Thread safety: used only by the thread that opened it, like its Cpu; the Cpu's plain accesses stay allowed inside
/// it. Disposal: <see cref="Dispose"/> ends the scope (a second call does nothing); an access through an ended scope, or
/// one of its copies, throws <see cref="ObjectDisposedException"/> while no newer scope of its Cpu is open (the hit path
/// checks only that some scope holds the section, which keeps it store-free and is all safety needs).
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
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = _cpu.TranslateInScope(address, AccessKind.Read, _id);
            if (p != null)
            {
                return Unsafe.ReadUnaligned<T>(p);
            }
            _cpu.ThrowFaultInScope(address, AccessKind.Read);
        }
        return _cpu.LoadAcrossPagesInScope<T>(address);
    }

    /// <summary>Reads a value, returning the outcome instead of throwing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryLoad<T>(ulong address, out T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = _cpu.TranslateInScope(address, AccessKind.Read, _id);
            if (p != null)
            {
                value = Unsafe.ReadUnaligned<T>(p);
                return AccessOutcome.Ok;
            }
            value = default;
            return _cpu.LastOutcome;
        }
        return _cpu.TryLoadAcrossPagesInScope(address, out value);
    }

    /// <summary>Writes a value; throws <see cref="SegmentationFaultException"/> if the access cannot be resolved.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Store<T>(ulong address, T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = _cpu.TranslateInScope(address, AccessKind.Write, _id);
            if (p != null)
            {
                Unsafe.WriteUnaligned(p, value);
                return;
            }
            _cpu.ThrowFaultInScope(address, AccessKind.Write);
        }
        _cpu.StoreAcrossPagesInScope(address, value);
    }

    /// <summary>Writes a value, returning the outcome.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public AccessOutcome TryStore<T>(ulong address, T value) where T : unmanaged
    {
        if ((address & PageOffsetMask) <= (ulong)(PageSize - sizeof(T)))
        {
            byte* p = _cpu.TranslateInScope(address, AccessKind.Write, _id);
            if (p != null)
            {
                Unsafe.WriteUnaligned(p, value);
                return AccessOutcome.Ok;
            }
            return _cpu.LastOutcome;
        }
        return _cpu.TryStore(address, value);
    }

    /// <summary>
    /// A quiescent point (<c>rcu_quiescent_state</c>): writers waiting for this scope may go on. Call it between
    /// batches of accesses when the thread may not access memory for a while; the scope stays open.
    /// </summary>
    public void QuiescentPoint() => _cpu.QuiescentPoint(_id);

    /// <summary>Ends the scope: the Cpu's read section is left. A second call, or one on a copy, does nothing.</summary>
    public void Dispose() => _cpu?.ExitScope(_id);
}
