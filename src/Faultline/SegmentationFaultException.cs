namespace Faultline;

/// <summary>A guest access that no fault could resolve (SIGSEGV, SIGBUS or out of memory).</summary>
public sealed class SegmentationFaultException : Exception
{
    /// <summary>Creates the exception.</summary>
    public SegmentationFaultException(ulong address, AccessKind access, AccessOutcome outcome)
        : base($"{Describe(outcome)} at 0x{address:x} on {access.ToString().ToLowerInvariant()}")
    {
        Address = address;
        Access = access;
        Outcome = outcome;
    }

    /// <summary>The faulting address (<c>si_addr</c>).</summary>
    public ulong Address { get; }

    /// <summary>What the access was.</summary>
    public AccessKind Access { get; }

    /// <summary><see cref="AccessOutcome.SegvMapErr"/>, <see cref="AccessOutcome.SegvAccErr"/>, bus error or OOM.</summary>
    public AccessOutcome Outcome { get; }

    /// <summary>The <c>si_code</c>: 1 for <c>SEGV_MAPERR</c>, 2 for <c>SEGV_ACCERR</c>, 0 otherwise.</summary>
    public int SignalCode => Outcome switch
    {
        AccessOutcome.SegvMapErr => 1,
        AccessOutcome.SegvAccErr => 2,
        _ => 0,
    };

    private static string Describe(AccessOutcome outcome) => outcome switch
    {
        AccessOutcome.SegvMapErr => "SIGSEGV (SEGV_MAPERR)",
        AccessOutcome.SegvAccErr => "SIGSEGV (SEGV_ACCERR)",
        AccessOutcome.BusError => "SIGBUS",
        AccessOutcome.OutOfMemory => "out of memory",
        _ => outcome.ToString(),
    };
}
