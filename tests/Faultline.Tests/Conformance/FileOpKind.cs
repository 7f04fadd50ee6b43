namespace Faultline.Tests.Conformance;

/// <summary>The kinds of <see cref="FileOp"/>.</summary>
public enum FileOpKind
{
    /// <summary>A byte stored through a mapping.</summary>
    Store,
    /// <summary>A byte loaded through a mapping.</summary>
    Load,
    /// <summary><c>ftruncate</c>.</summary>
    Truncate,
    /// <summary><c>pwrite</c>.</summary>
    Pwrite,
    /// <summary><c>msync(MS_SYNC)</c> of the shared mapping.</summary>
    Msync,
    /// <summary>The shared mapping unmapped and mapped again.</summary>
    Remap,
}
