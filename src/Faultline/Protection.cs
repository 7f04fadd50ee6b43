namespace Faultline;

/// <summary>Page protection bits (<c>PROT_*</c>, Linux values).</summary>
[Flags]
public enum Protection
{
    /// <summary><c>PROT_NONE</c>: no access.</summary>
    None = 0,
    /// <summary><c>PROT_READ</c>.</summary>
    Read = 0x1,
    /// <summary><c>PROT_WRITE</c> (on x86 also readable).</summary>
    Write = 0x2,
    /// <summary><c>PROT_EXEC</c>.</summary>
    Execute = 0x4,
    /// <summary><c>PROT_SEM</c>: accepted and ignored, as on x86.</summary>
    Semaphore = 0x8,
    /// <summary><c>PROT_GROWSDOWN</c> (mprotect only: extend to the start of a grows-down VMA).</summary>
    GrowsDown = 0x01000000,
    /// <summary><c>PROT_GROWSUP</c> (mprotect only).</summary>
    GrowsUp = 0x02000000,
    /// <summary>Read and write.</summary>
    ReadWrite = Read | Write,
}
