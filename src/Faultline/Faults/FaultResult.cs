namespace Faultline.Faults;

/// <summary>A fault's outcome (<c>vm_fault_t</c>, kernel values; <see cref="PtNotSame"/> from the SPF series).</summary>
[Flags]
internal enum FaultResult
{
    /// <summary>Handled (or nothing to do): retry the access.</summary>
    Ok = 0,
    Oom = 0x1,
    SigBus = 0x2,
    Major = 0x4,
    SigSegv = 0x40,
    NoPage = 0x100,
    Locked = 0x200,
    Retry = 0x400,
    Fallback = 0x800,
    Completed = 0x4000,
    /// <summary><c>VM_FAULT_PTNOTSAME</c>: the PTE changed under us; another thread handled it.</summary>
    PtNotSame = 0x8000,

    /// <summary>Results that end the fault with an error.</summary>
    Error = Oom | SigBus | SigSegv,
}
