namespace Faultline;

/// <summary>How a <c>Try*</c> access ended.</summary>
public enum AccessOutcome
{
    /// <summary>The access completed.</summary>
    Ok,
    /// <summary>SIGSEGV, <c>SEGV_MAPERR</c>: no mapping at the address.</summary>
    SegvMapErr,
    /// <summary>SIGSEGV, <c>SEGV_ACCERR</c>: the mapping does not permit the access.</summary>
    SegvAccErr,
    /// <summary>SIGBUS: e.g. a misaligned atomic.</summary>
    BusError,
    /// <summary>The guest ran out of physical memory (the OOM killer's case).</summary>
    OutOfMemory,
}
