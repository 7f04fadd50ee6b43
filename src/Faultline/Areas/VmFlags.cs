namespace Faultline.Areas;

/// <summary>VMA flags with the kernel's x86-64 <c>VM_*</c> values (<c>include/linux/mm.h</c>).</summary>
/// <remarks>
/// <c>VM_GROWSUP</c> is 0 on x86-64 (only ia64 and parisc define it), so it has no member: a grows-up VMA cannot exist.
/// </remarks>
[Flags]
internal enum VmFlags : ulong
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
    /// <summary><c>VM_UFFD_MISSING</c>: a user-fault channel resolves faults on missing pages.</summary>
    UserfaultMissing = 0x200,
    /// <summary>
    /// <c>VM_PFNMAP</c>: page ranges with no <c>struct page</c>: host memory (raw frames, no refcount, no rmap) or a
    /// device mapping (no frame at all).
    /// </summary>
    PfnMap = 0x400,
    /// <summary><c>VM_UFFD_WP</c>: a user-fault channel resolves writes to pages it write-protected.</summary>
    UserfaultWp = 0x1000,
    /// <summary><c>VM_LOCKED</c>: <c>mlock</c>ed; faulted in and never reclaimed.</summary>
    Locked = 0x2000,
    /// <summary><c>VM_IO</c>: memory-mapped I/O.</summary>
    Io = 0x4000,
    /// <summary><c>VM_SEQ_READ</c>: <c>MADV_SEQUENTIAL</c>.</summary>
    SequentialRead = 0x8000,
    /// <summary><c>VM_RAND_READ</c>: <c>MADV_RANDOM</c>.</summary>
    RandomRead = 0x10000,
    /// <summary><c>VM_DONTCOPY</c> (<c>MADV_DONTFORK</c>): fork leaves the VMA out of the child.</summary>
    DontCopy = 0x20000,
    /// <summary><c>VM_DONTEXPAND</c>: mremap may not grow the VMA.</summary>
    DontExpand = 0x40000,
    /// <summary><c>VM_LOCKONFAULT</c>: <c>MLOCK_ONFAULT</c>, locked pages are faulted in on access, not at once.</summary>
    LockOnFault = 0x80000,
    Account = 0x100000,
    NoReserve = 0x200000,
    /// <summary><c>VM_SYNC</c>: <c>MAP_SYNC</c> (DAX only; never set on anonymous memory).</summary>
    Sync = 0x800000,
    /// <summary><c>VM_WIPEONFORK</c> (<c>MADV_WIPEONFORK</c>): the child gets the VMA with fresh zero-filled memory.</summary>
    WipeOnFork = 0x2000000,
    /// <summary><c>VM_DONTDUMP</c>: <c>MADV_DONTDUMP</c>, left out of core dumps.</summary>
    DontDump = 0x4000000,
    /// <summary>
    /// <c>VM_SOFTDIRTY</c>: every page of the VMA reads soft-dirty (set on a new mapping, cleared by <c>clear_refs</c>);
    /// only in an address space that tracks soft-dirty pages (<c>CONFIG_MEM_SOFT_DIRTY</c>).
    /// </summary>
    SoftDirty = 0x8000000,
    /// <summary><c>VM_MIXEDMAP</c>: refcounted frames and raw page-frame numbers mixed (never set here; part of <see cref="SpecialMask"/>).</summary>
    MixedMap = 0x10000000,
    /// <summary><c>VM_HUGEPAGE</c>: <c>MADV_HUGEPAGE</c>.</summary>
    HugePage = 0x20000000,
    /// <summary><c>VM_NOHUGEPAGE</c>: <c>MADV_NOHUGEPAGE</c> or <c>MAP_STACK</c>.</summary>
    NoHugePage = 0x40000000,
    /// <summary><c>VM_SEALED</c> (Linux 6.10, 64-bit): <c>mseal</c>ed.</summary>
    Sealed = 0x8000_0000_0000_0000,
    /// <summary><c>VM_UFFD_MINOR</c> (bit 38): a user-fault channel resolves faults on cached shared-memory pages not yet mapped.</summary>
    UserfaultMinor = 1UL << 38,

    /// <summary><c>__VM_UFFD_FLAGS</c>.</summary>
    UserfaultFlags = UserfaultMissing | UserfaultWp | UserfaultMinor,

    /// <summary>The access bits (<c>VM_ACCESS_FLAGS</c>).</summary>
    AccessFlags = Read | Write | Exec,

    /// <summary><c>VM_LOCKED_MASK</c>: the bits <c>munlock</c> clears.</summary>
    LockedMask = Locked | LockOnFault,

    /// <summary><c>VM_SPECIAL</c>: VMAs that are never merged, mlocked or expanded.</summary>
    SpecialMask = Io | DontExpand | PfnMap | MixedMap,
}
