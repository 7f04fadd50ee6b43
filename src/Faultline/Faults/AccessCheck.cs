using Faultline.Areas;

namespace Faultline.Faults;

/// <summary>
/// <c>access_error</c> (arch/x86/mm/fault.c) on VMA flags: a write needs <c>VM_WRITE</c>; an instruction fetch
/// needs <c>VM_EXEC</c> (x86 reaches the same answer through the NX bit); a read needs any access bit
/// (<c>vma_is_accessible</c>: on x86 a write-only or exec-only page is readable).
/// </summary>
internal static class AccessCheck
{
    /// <summary>True when the VMA forbids the access.</summary>
    public static bool IsError(VmFlags flags, AccessKind access) => access switch
    {
        AccessKind.Write => (flags & VmFlags.Write) == 0,
        AccessKind.Execute => (flags & VmFlags.Exec) == 0,
        _ => (flags & VmFlags.AccessFlags) == 0,
    };
}
