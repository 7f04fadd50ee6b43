namespace Faultline;

/// <summary>
/// A guest access that no page fault could resolve: <see cref="SegmentationFaultException"/> for SIGSEGV and SIGBUS,
/// <see cref="GuestOutOfMemoryException"/> when guest physical memory ran out. Catch this type for either.
/// </summary>
/// <remarks>
/// Thrown by the <see cref="Cpu"/> accessors (<c>Load</c>, <c>Store</c>, <c>Read</c>, <c>Write</c>, <c>Fetch</c>,
/// <c>Fill</c>, the atomics) and the <see cref="CpuScope"/> ones (including its spans); each has a <c>Try*</c> form
/// (for <c>Fill</c>, <c>FillPartial</c>) that returns the <see cref="AccessOutcome"/> instead. The address space is
/// unchanged by the failed access and stays usable. Immutable once thrown.
/// </remarks>
public abstract class GuestAccessException : Exception
{
    private protected GuestAccessException(string message, ulong address, AccessKind access, AccessOutcome outcome)
        : base(message)
    {
        Address = address;
        Access = access;
        Outcome = outcome;
    }

    /// <summary>The faulting address (<c>si_addr</c>).</summary>
    public ulong Address { get; }

    /// <summary>What the access was.</summary>
    public AccessKind Access { get; }

    /// <summary>How the access ended (never <see cref="AccessOutcome.Ok"/>).</summary>
    public AccessOutcome Outcome { get; }

    /// <summary>The exception for a failed access: out of memory, or a signal.</summary>
    internal static GuestAccessException For(ulong address, AccessKind access, AccessOutcome outcome) =>
        outcome == AccessOutcome.OutOfMemory
            ? new GuestOutOfMemoryException(address, access)
            : new SegmentationFaultException(address, access, outcome);
}
