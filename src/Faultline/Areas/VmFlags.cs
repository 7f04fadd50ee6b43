namespace Faultline.Areas;

/// <summary>VMA flags with the kernel's <c>VM_*</c> values.</summary>
[Flags]
internal enum VmFlags : uint
{
    None = 0,
    Read = 0x1,
    Write = 0x2,
    Exec = 0x4,
    Shared = 0x8,
    MayRead = 0x10,
    MayWrite = 0x20,
    MayExec = 0x40,
    MayShare = 0x80,
    GrowsDown = 0x100,
    UserfaultMissing = 0x200,
    Locked = 0x2000,
    /// <summary><c>VM_DONTCOPY</c> (<c>MADV_DONTFORK</c>): fork leaves the VMA out of the child.</summary>
    DontCopy = 0x20000,
    Account = 0x100000,
    NoReserve = 0x200000,
    GrowsUp = 0x4000000,
    /// <summary><c>VM_WIPEONFORK</c> (<c>MADV_WIPEONFORK</c>): the child gets the VMA with fresh zero-filled memory.</summary>
    WipeOnFork = 0x2000000,

    /// <summary>The access bits (<c>VM_ACCESS_FLAGS</c>).</summary>
    AccessFlags = Read | Write | Exec,
}
