namespace Faultline.Cli.Statistics;

/// <summary>One hardware floor over the repeats.</summary>
/// <param name="Name">The operation.</param>
/// <param name="NsPerOp">Median and range of its ns per operation.</param>
internal sealed record FloorSummary(string Name, Spread NsPerOp);
