namespace Faultline.Cli.Replay;

/// <summary>How one replayed call compared with the kernel.</summary>
internal enum OutcomeKind
{
    /// <summary>Faultline returned what the kernel returned.</summary>
    Equal,
    /// <summary>Faultline returned something else.</summary>
    Different,
    /// <summary>Faultline does not model the call (or cannot reproduce its result); it was not replayed.</summary>
    Unmodelled,
}
