namespace Faultline;

/// <summary>A failed map, unmap or protect, carrying Linux's errno.</summary>
public sealed class MemoryOperationException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MemoryOperationException(string operation, Errno error)
        : base($"{operation} failed: {error}")
    {
        Error = error;
    }

    /// <summary>The errno.</summary>
    public Errno Error { get; }
}
