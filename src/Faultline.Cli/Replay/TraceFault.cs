namespace Faultline.Cli.Replay;

/// <summary>One user page fault of a recorded program (perf's <c>exceptions:page_fault_user</c>).</summary>
/// <param name="Tid">The faulting thread.</param>
/// <param name="Time">When, in seconds on the clock of <see cref="TraceCall.Time"/>.</param>
/// <param name="Address">The faulting address.</param>
/// <param name="Access">Read, write or instruction fetch (from the x86 error code's W and I bits).</param>
internal sealed record TraceFault(int Tid, double Time, ulong Address, AccessKind Access);
