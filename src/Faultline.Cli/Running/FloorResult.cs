namespace Faultline.Cli.Running;

/// <summary>One measurement of a hardware floor: what an operation costs the machine itself, in ns.</summary>
/// <param name="Name">The operation (see <see cref="FloorProbe"/>).</param>
/// <param name="Repeat">The repeat it was measured in (0-based).</param>
/// <param name="NsPerOp">CPU ns of the measuring thread per operation.</param>
internal sealed record FloorResult(string Name, int Repeat, double NsPerOp);
