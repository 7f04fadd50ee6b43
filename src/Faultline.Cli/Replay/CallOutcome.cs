namespace Faultline.Cli.Replay;

/// <summary>What one replayed call (or fault) did on Faultline.</summary>
/// <param name="Kind">Equal, different or unmodelled.</param>
/// <param name="Kernel">The kernel's result as text (<c>0x7ffff7fc0000</c>, <c>-1 ENOMEM</c>).</param>
/// <param name="Faultline">Faultline's result in the same form, or empty when not replayed.</param>
/// <param name="Reason">For an unmodelled call, why.</param>
/// <param name="StandIn">True when a file mapping was replayed as anonymous memory of the same shape.</param>
internal sealed record CallOutcome(OutcomeKind Kind, string Kernel, string Faultline, string? Reason = null, bool StandIn = false);
