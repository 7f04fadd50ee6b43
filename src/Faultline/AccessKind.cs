namespace Faultline;

/// <summary>The kind of a memory access, as a fault records it.</summary>
public enum AccessKind
{
    /// <summary>A data read.</summary>
    Read,
    /// <summary>A data write.</summary>
    Write,
    /// <summary>An instruction fetch.</summary>
    Execute,
}
