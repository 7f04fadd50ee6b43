namespace Faultline.Backing;

/// <summary>
/// What <see cref="IBacking.Fault"/> answers: the subset of <c>vm_fault_t</c> a backing can produce (the fault handler
/// maps it onto its own result, since this layer sits below it).
/// </summary>
internal enum BackingFaultStatus
{
    /// <summary>The frame is returned with a reference for the caller.</summary>
    Ok,
    /// <summary><c>VM_FAULT_SIGBUS</c>: the page lies beyond the end of the backing.</summary>
    SigBus,
    /// <summary><c>VM_FAULT_OOM</c>: no frame could be had.</summary>
    Oom,
    /// <summary><c>VM_FAULT_RETRY</c>: the page cannot be had without sleeping; the caller retries on a path that may.</summary>
    Retry,
}
