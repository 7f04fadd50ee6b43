namespace Faultline;

/// <summary>
/// A guest access that ended in a signal: SIGSEGV (<c>SEGV_MAPERR</c>: nothing mapped; <c>SEGV_ACCERR</c>: the
/// mapping forbids the access) or SIGBUS (a misaligned atomic). Out of memory is <see cref="GuestOutOfMemoryException"/>.
/// </summary>
/// <remarks>Immutable once thrown.</remarks>
public sealed class SegmentationFaultException : GuestAccessException
{
    /// <summary>Creates the exception.</summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="outcome"/> is not a signal.</exception>
    public SegmentationFaultException(ulong address, AccessKind access, AccessOutcome outcome)
        : base($"{Describe(outcome)} at 0x{address:x} on {access.ToString().ToLowerInvariant()}", address, access, outcome)
    {
    }

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
        _ => throw new ArgumentOutOfRangeException(nameof(outcome), outcome, "not a signal"),
    };
}
