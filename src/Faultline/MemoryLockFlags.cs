namespace Faultline;

/// <summary><c>mlock2</c> flags (<c>MLOCK_*</c>, Linux values).</summary>
[Flags]
public enum MemoryLockFlags
{
    /// <summary>Plain <c>mlock</c>: lock and fault in now.</summary>
    None = 0,
    /// <summary><c>MLOCK_ONFAULT</c>: <c>VM_LOCKONFAULT</c>, pages are locked as they are faulted in.</summary>
    OnFault = 1,
}
