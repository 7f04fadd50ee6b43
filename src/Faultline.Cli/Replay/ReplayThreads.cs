namespace Faultline.Cli.Replay;

/// <summary>Which threads a replay runs the recorded calls on (<c>--threads</c>).</summary>
internal enum ReplayThreads
{
    /// <summary>One thread per recorded thread, each making that thread's calls and faults, in the recorded order.</summary>
    Recorded,
    /// <summary>Every call and fault on the replaying thread, in the recorded order.</summary>
    Serial,
}
