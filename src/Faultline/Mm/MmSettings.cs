namespace Faultline.Mm;

/// <summary>
/// The plain values an address space's inner layers need from its options (the sysctls and boot parameters of the
/// kernel: <c>vm.max_map_count</c>, <c>vm.mmap_min_addr</c>, <c>mmap_base</c>, rlimits, capabilities), so no layer below the public
/// surface reads the public options record.
/// </summary>
/// <param name="FrameCount">Frames of guest RAM, the zero frame included.</param>
/// <param name="PoisonFreedFrames">Fill freed frames with poison and check it on reuse.</param>
/// <param name="FaultPath">The fault path.</param>
/// <param name="SpeculativePageTableAllocation">The speculative path may allocate missing page tables.</param>
/// <param name="MaxMapCount"><c>vm.max_map_count</c>.</param>
/// <param name="MmapMinAddress"><c>vm.mmap_min_addr</c>.</param>
/// <param name="MmapBase"><c>mm->mmap_base</c>: top-down placement starts below it.</param>
/// <param name="MapZeroPageOnRead">
/// A read fault on empty anonymous memory maps the shared zero frame; false is <c>mm_forbids_zeropage</c>.
/// </param>
/// <param name="MemoryLockLimit"><c>RLIMIT_MEMLOCK</c> in bytes.</param>
/// <param name="CapIpcLock">The process holds <c>CAP_IPC_LOCK</c>: locking ignores <paramref name="MemoryLockLimit"/>.</param>
/// <param name="BrkStart"><c>mm->start_brk</c>, page-aligned.</param>
/// <param name="BackgroundZeroing">Freed frames are cleared by a background worker rather than by the fault that takes them.</param>
/// <param name="StackLimit"><c>RLIMIT_STACK</c> in bytes: the most a grows-down VMA may span after stack expansion.</param>
/// <param name="ThpAlignedPlacement">A hint-less private anonymous mmap of a multiple of 2 MiB is placed 2 MiB-aligned (<c>thp_get_unmapped_area_vmflags</c>).</param>
/// <param name="FaultAroundPages"><c>fault_around_pages</c>: the aligned window a read fault on a page-cache backing maps cached pages in.</param>
/// <param name="TransparentHugePages"><c>/sys/kernel/mm/transparent_hugepage/enabled</c>; read through <see cref="ThpPolicy"/>.</param>
/// <param name="Swap">The swap area of the arena (its first address space's choice; a forked child shares it), or null.</param>
/// <param name="SoftDirty"><c>CONFIG_MEM_SOFT_DIRTY</c>: new VMAs get <c>VM_SOFTDIRTY</c> and pagemap reports soft-dirty bits.</param>
internal readonly record struct MmSettings(
    int FrameCount,
    bool PoisonFreedFrames,
    FaultPath FaultPath,
    bool SpeculativePageTableAllocation,
    int MaxMapCount,
    ulong MmapMinAddress,
    ulong MmapBase,
    bool MapZeroPageOnRead,
    ulong MemoryLockLimit = 8 << 20,
    bool CapIpcLock = false,
    ulong BrkStart = 0x5555_5555_6000,
    bool BackgroundZeroing = false,
    ulong StackLimit = 8 << 20,
    int FaultAroundPages = 16,
    bool ThpAlignedPlacement = true,
    bool SoftDirty = false,
    TransparentHugePageMode TransparentHugePages = TransparentHugePageMode.Madvise,
    SwapSettings? Swap = null);
