namespace Faultline;

/// <summary>
/// A page fault that needed a frame of guest physical memory when none was free (the kernel's <c>VM_FAULT_OOM</c>,
/// where the OOM killer would step in). Not a SIGSEGV: the access was allowed, the memory was not there. Raise
/// <see cref="FaultlineOptions.PhysicalMemoryBytes"/>, or unmap memory, and the same access succeeds.
/// </summary>
/// <remarks>Counted as <see cref="VmCounters.OutOfMemory"/>. Immutable once thrown.</remarks>
public sealed class GuestOutOfMemoryException : GuestAccessException
{
    /// <summary>Creates the exception.</summary>
    public GuestOutOfMemoryException(ulong address, AccessKind access)
        : base($"guest out of memory: no free frame for the {access.ToString().ToLowerInvariant()} fault at 0x{address:x} (FaultlineOptions.PhysicalMemoryBytes)",
            address, access, AccessOutcome.OutOfMemory)
    {
    }
}
