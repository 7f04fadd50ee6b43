namespace Faultline.Cli.Replay;

/// <summary>One call of a benchmark replay and the touches that follow it before the next call.</summary>
/// <param name="Call">The call, or null for the touches before the first call.</param>
/// <param name="Touches">The faults (recorded, or one touch per page of a new anonymous mapping) after the call, in order.</param>
internal sealed record ReplaySegment(TraceCall? Call, IReadOnlyList<TraceFault> Touches);
