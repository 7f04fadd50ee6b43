namespace Faultline.Areas;

/// <summary>
/// One message of a user-fault channel (the kernel's <c>struct uffd_msg</c>): a page fault or a non-cooperative
/// event. The public surface turns it into a <c>UserFaultEvent</c>.
/// </summary>
internal readonly record struct UserFaultMessage(
    UserFaultEventKind Kind,
    ulong Address,
    ulong Second,
    ulong Length,
    UserFaultModes Reason,
    AccessKind Access,
    int ThreadId,
    long CpuId,
    UserFaultContext? Child)
{
    /// <summary><c>userfault_msg</c>: a fault at <paramref name="address"/> for <paramref name="reason"/>.</summary>
    public static UserFaultMessage Fault(ulong address, UserFaultModes reason, AccessKind access, long cpuId) =>
        new(UserFaultEventKind.PageFault, address, 0, 0, reason, access, Environment.CurrentManagedThreadId, cpuId, null);

    /// <summary>A non-cooperative event over [<paramref name="address"/>, <paramref name="second"/>) or to it.</summary>
    public static UserFaultMessage Event(UserFaultEventKind kind, ulong address, ulong second, ulong length, UserFaultContext? child = null) =>
        new(kind, address, second, length, UserFaultModes.None, AccessKind.Read, Environment.CurrentManagedThreadId, 0, child);
}
