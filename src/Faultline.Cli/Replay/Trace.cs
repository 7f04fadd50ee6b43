namespace Faultline.Cli.Replay;

/// <summary>
/// A recorded program run (<c>faultline record</c>): its memory system calls in order, the process-shaping calls
/// (clone, fork, vfork, execve) that say which threads share an address space, the layout of every exec, and the page
/// faults when they could be recorded.
/// </summary>
/// <param name="Version">The file format's version (<see cref="CurrentVersion"/>).</param>
/// <param name="Command">The program and its arguments.</param>
/// <param name="Kernel">The host kernel's release.</param>
/// <param name="ExitCode">The program's exit code.</param>
/// <param name="FaultsNote">Null when faults were recorded (or not asked for); else why they could not be.</param>
/// <param name="FaultsRecorded">True when <see cref="Faults"/> holds the run's page faults.</param>
/// <param name="Layouts">One per successful execve.</param>
/// <param name="Calls">Every traced call in <see cref="TraceCall.Seq"/> order.</param>
/// <param name="Faults">The page faults, in time order (empty unless <see cref="FaultsRecorded"/>).</param>
/// <param name="FileSystems">The file system type of every mapped file (<c>ext4</c>, <c>tmpfs</c>), which decides its placement.</param>
internal sealed record Trace(int Version, IReadOnlyList<string> Command, string Kernel, int ExitCode, string? FaultsNote,
    bool FaultsRecorded, IReadOnlyList<ProcessLayout> Layouts, IReadOnlyList<TraceCall> Calls, IReadOnlyList<TraceFault> Faults,
    IReadOnlyDictionary<string, string> FileSystems)
{
    /// <summary>The format written by this version.</summary>
    public const int CurrentVersion = 1;
}
