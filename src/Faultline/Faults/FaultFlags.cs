namespace Faultline.Faults;

/// <summary>The fault's flags (<c>FAULT_FLAG_*</c>, kernel values; <see cref="Speculative"/> as in the SPF series).</summary>
[Flags]
internal enum FaultFlags
{
    None = 0,
    Write = 1 << 0,
    MakeWrite = 1 << 1,
    AllowRetry = 1 << 2,
    RetryNoWait = 1 << 3,
    Killable = 1 << 4,
    Tried = 1 << 5,
    User = 1 << 6,
    Remote = 1 << 7,
    Instruction = 1 << 8,
    Interruptible = 1 << 9,
    VmaLock = 1 << 12,
    Speculative = 1 << 13,
    /// <summary>
    /// <c>FAULT_FLAG_UNSHARE</c>: a read pin (<c>FOLL_PIN</c> without <c>FOLL_WRITE</c>) met an anonymous page shared
    /// copy-on-write; make it exclusive (copied if needed) without making it writable.
    /// </summary>
    Unshare = 1 << 10,
}
