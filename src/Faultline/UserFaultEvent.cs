namespace Faultline;

/// <summary>
/// One message read from a <see cref="UserFaultChannel"/> (the kernel's <c>struct uffd_msg</c>): a page fault a Cpu is
/// blocked on, or a non-cooperative event (fork, remap, remove, unmap).
/// </summary>
/// <remarks>A plain value, safe to copy and keep on any thread.</remarks>
public readonly struct UserFaultEvent
{
    internal UserFaultEvent(UserFaultEventKind kind, ulong address, ulong second, ulong length, UserFaultModes reason,
        AccessKind access, int threadId, long cpuId, UserFaultChannel? child)
    {
        Kind = kind;
        Address = address;
        Second = second;
        Length = length;
        Reason = reason;
        Access = access;
        ThreadId = threadId;
        CpuId = cpuId;
        Child = child;
    }

    /// <summary>What happened.</summary>
    public UserFaultEventKind Kind { get; }

    /// <summary>
    /// <see cref="UserFaultEventKind.PageFault"/>: the faulting page (page-aligned, <c>pagefault.address</c>);
    /// <see cref="UserFaultEventKind.Remap"/>: the old start (<c>remap.from</c>); <see cref="UserFaultEventKind.Remove"/>
    /// and <see cref="UserFaultEventKind.Unmap"/>: the range's start (<c>remove.start</c>).
    /// </summary>
    public ulong Address { get; }

    /// <summary><see cref="UserFaultEventKind.Remap"/>: the new start (<c>remap.to</c>); otherwise 0.</summary>
    public ulong To => Kind == UserFaultEventKind.Remap ? Second : 0;

    /// <summary><see cref="UserFaultEventKind.Remove"/> and <see cref="UserFaultEventKind.Unmap"/>: the range's end, exclusive (<c>remove.end</c>); otherwise 0.</summary>
    public ulong End => Kind is UserFaultEventKind.Remove or UserFaultEventKind.Unmap ? Second : 0;

    /// <summary>Bytes the event covers (<c>remap.len</c>, or end − start); 0 for a page fault or a fork.</summary>
    public ulong Length { get; }

    /// <summary>
    /// <see cref="UserFaultEventKind.PageFault"/>: why (<see cref="UserFaultModes.Missing"/>,
    /// <see cref="UserFaultModes.WriteProtect"/> — <c>UFFD_PAGEFAULT_FLAG_WP</c> — or <see cref="UserFaultModes.Minor"/>).
    /// </summary>
    public UserFaultModes Reason { get; }

    /// <summary><see cref="UserFaultEventKind.PageFault"/>: the access (a write sets <c>UFFD_PAGEFAULT_FLAG_WRITE</c>).</summary>
    public AccessKind Access { get; }

    /// <summary>The managed thread id of the faulting (or event-causing) thread (<c>pagefault.feat.ptid</c>).</summary>
    public int ThreadId { get; }

    /// <summary><see cref="UserFaultEventKind.PageFault"/>: the faulting <see cref="Cpu.Id"/> (a populate faults from a context with an id of its own).</summary>
    public long CpuId { get; }

    /// <summary><see cref="UserFaultEventKind.Fork"/>: the channel serving the child's registrations (<c>fork.ufd</c>); its address space is the child.</summary>
    public UserFaultChannel? Child { get; }

    // The second address of the message: remap.to or remove.end.
    private ulong Second { get; }

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        UserFaultEventKind.PageFault => $"PageFault {Reason} {Access} 0x{Address:x} cpu {CpuId} thread {ThreadId}",
        UserFaultEventKind.Fork => $"Fork child space {Child?.AddressSpace.Id}",
        UserFaultEventKind.Remap => $"Remap 0x{Address:x} -> 0x{To:x} ({Length} bytes)",
        _ => $"{Kind} [0x{Address:x}, 0x{End:x})",
    };
}
