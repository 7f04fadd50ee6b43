namespace Faultline;

/// <summary>Settings of an <see cref="AddressSpace"/>.</summary>
/// <remarks>
/// An immutable record (<c>init</c> properties; derive variants with <c>with</c>): one instance may configure any number
/// of address spaces on any threads. The values are checked when an <see cref="AddressSpace"/> is created
/// (<see cref="ArgumentOutOfRangeException"/>); an address space keeps the instance it was given
/// (<see cref="AddressSpace.Options"/>). Nothing to dispose.
/// </remarks>
public sealed record FaultlineOptions
{
    /// <summary>Guest physical memory in bytes (reserved lazily). Default 1 GiB.</summary>
    public long PhysicalMemoryBytes { get; init; } = 1L << 30;

    /// <summary>The fault path. Default <see cref="FaultPath.MmapLock"/>.</summary>
    public FaultPath FaultPath { get; init; } = FaultPath.MmapLock;

    /// <summary>Speculative page-table allocation on the speculative path (Peter Zijlstra's sketch in the SPF v2 review, 2017-08). Default on.</summary>
    public bool SpeculativePageTableAllocation { get; init; } = true;

    /// <summary>Software TLB entries per Cpu (a power of two). Default 1024.</summary>
    public int TlbEntries { get; init; } = 1024;

    /// <summary>
    /// 2 MiB translations each Cpu caches behind its software TLB (0, or a power of two), as the x86 STLB holds huge
    /// entries: a TLB miss in a block mapped by a huge page looks there first and fills its 4 KiB entry without walking
    /// the page table; the walk that ends at a huge PMD fills it. Invalidated with the 4 KiB entries. Costs
    /// 16 bytes per entry, allocated on a Cpu's first huge-page walk. 0 disables it (every miss walks). Default 512,
    /// enough for 1 GiB of huge pages.
    /// </summary>
    public int HugeTlbEntries { get; init; } = 512;

    /// <summary><c>vm.max_map_count</c>. Default 65530.</summary>
    public int MaxMapCount { get; init; } = 65530;

    /// <summary><c>vm.mmap_min_addr</c>: fixed mappings below it fail with EPERM, and no stack grows below it. Default 64 KiB.</summary>
    public ulong MmapMinAddress { get; init; } = 0x10000;

    /// <summary>Top-down placement starts below this address (<c>mm->mmap_base</c>).</summary>
    public ulong MmapBase { get; init; } = 0x7F00_0000_0000;

    /// <summary>
    /// A read fault on untouched private anonymous memory maps the shared zero page read-only (Rss stays 0 until a
    /// write copies it). When false, as with <c>mm_forbids_zeropage</c>, the read allocates a private zeroed frame that
    /// counts in Rss and is mapped writable and dirty if the mapping is writable. Default true.
    /// </summary>
    public bool MapZeroPageOnRead { get; init; } = true;

    /// <summary>
    /// Clear freed frames on a thread-pool worker, ahead of demand, instead of in the fault that takes them (the idea
    /// of pre-zeroed page pools): a first-touch fault then costs the mapping, not the zeroing, while the worker keeps
    /// up; a fault that finds no cleared frame clears one itself. Worth it when a core is idle; it competes with the guest
    /// otherwise. Ignored with <see cref="PoisonFreedFrames"/>. Default false.
    /// </summary>
    public bool BackgroundZeroing { get; init; }

    /// <summary>
    /// <c>fault_around_bytes</c>: a read fault on shared memory also maps the pages around it that are already cached,
    /// within the aligned window of this many bytes (clipped to the mapping and its page table), as Linux's
    /// <c>do_fault_around</c> does. A power of two from 4 KiB (no fault-around) to 2 MiB. Default 64 KiB, Linux's.
    /// </summary>
    public int FaultAroundBytes { get; init; } = 64 << 10;

    /// <summary>
    /// <c>RLIMIT_MEMLOCK</c> in bytes: what <c>mlock</c>, <c>mlockall</c>, <c>MAP_LOCKED</c> and a locked <c>brk</c> may
    /// lock without <see cref="CapIpcLock"/>. Default 8 MiB (Linux's default since 5.16). 0 makes locking EPERM.
    /// </summary>
    public ulong MemoryLockLimit { get; init; } = 8 << 20;

    /// <summary>The guest holds <c>CAP_IPC_LOCK</c>: locking is not limited by <see cref="MemoryLockLimit"/>. Default false.</summary>
    public bool CapIpcLock { get; init; }

    /// <summary>
    /// <c>mm->start_brk</c>: where <see cref="AddressSpace.Brk"/>'s heap begins (page-aligned, at or above
    /// <see cref="MmapMinAddress"/>). Default <c>0x555555556000</c>, below <see cref="MmapBase"/>.
    /// </summary>
    public ulong BrkStart { get; init; } = 0x5555_5555_6000;

    /// <summary>
    /// <c>RLIMIT_STACK</c> in bytes: a fault below a <see cref="MapFlags.GrowsDown"/> mapping extends it down to the
    /// faulting page only while the mapping then spans at most this many bytes (<c>acct_stack_growth</c>); beyond it the
    /// access is a SIGSEGV. Default 8 MiB (Linux's default soft limit); <see cref="ulong.MaxValue"/> is unlimited.
    /// </summary>
    public ulong StackLimit { get; init; } = 8 << 20;

    /// <summary>
    /// Place a private anonymous <c>mmap</c> (or <c>mremap</c> move) without an address hint whose length is a multiple
    /// of 2 MiB on a 2 MiB boundary, as recent Linux does when transparent huge pages are built in (whatever the THP
    /// sysfs mode): <c>__get_unmapped_area</c> then calls <c>thp_get_unmapped_area_vmflags</c>, which searches 2 MiB more
    /// and aligns within it. Kernels before 6.7 do not; the 6.18 host this was compared with does. Default true; false
    /// places such mappings as any other.
    /// </summary>
    public bool ThpAlignedPlacement { get; init; } = true;

    /// <summary>
    /// Soft-dirty tracking, as Linux built with <c>CONFIG_MEM_SOFT_DIRTY</c>: every new mapping is marked
    /// <c>VM_SOFTDIRTY</c> (smaps shows <c>sd</c>) so all its pages read soft-dirty until
    /// <see cref="AddressSpace.ClearSoftDirty"/>, and <see cref="AddressSpace.ReadPageMap"/> reports bit 55. When false
    /// (the default, as kernels built without it) no mapping carries the flag and bit 55 always reads 0; the dirty log
    /// and write watches work either way.
    /// </summary>
    public bool SoftDirty { get; init; }

    /// <summary>
    /// <c>/sys/kernel/mm/transparent_hugepage/enabled</c>: which private anonymous mappings may get 2 MiB pages, with
    /// <see cref="Advice.HugePage"/> and <see cref="Advice.NoHugePage"/> choosing per mapping. Default
    /// <see cref="TransparentHugePageMode.Madvise"/>, the common distribution default, which changes nothing for a guest
    /// that does not ask. Faultline records the choice and keeps huge frames ready; faults still map 4 KiB pages.
    /// </summary>
    public TransparentHugePageMode TransparentHugePages { get; init; } = TransparentHugePageMode.Madvise;

    /// <summary>Fill freed frames with a poison pattern (debug runs).</summary>
    public bool PoisonFreedFrames { get; init; }

    /// <summary>
    /// A swap area (<c>swapon</c>), or null (the default): without one guest RAM is a hard limit and a fault that finds
    /// no free frame fails with <see cref="GuestOutOfMemoryException"/>; with one, anonymous pages are reclaimed to it
    /// first. See <see cref="SwapOptions"/>.
    /// </summary>
    public SwapOptions? Swap { get; init; }

    /// <summary>
    /// A memory limit for the address space and the children it forks (<c>memory.max</c> of its cgroup), in bytes,
    /// rounded down to whole pages; null (the default) for none, and no accounting. Over the limit a fault reclaims
    /// from the group, then fails with <see cref="GuestOutOfMemoryException"/>; see <see cref="MemoryGroup"/>, reached
    /// through <see cref="AddressSpace.MemoryGroup"/>, which can change the limit at run time. Negative values are
    /// rejected by the constructor.
    /// </summary>
    public long? MemoryLimitBytes { get; init; }

    /// <summary>
    /// Start a background huge-page collapse (<c>khugepaged</c>) that wakes once per this period and collapses every
    /// 2 MiB block of a huge-eligible mapping (under <see cref="TransparentHugePages"/>) still mapped by 4 KiB pages into
    /// one huge page, with Linux's defaults (<c>max_ptes_none</c> 511, <c>max_ptes_shared</c> 256); it stops when the
    /// address space is disposed. Null (the default) starts nothing; <see cref="Advice.Collapse"/> works either way.
    /// </summary>
    public TimeSpan? HugePageCollapsePeriod { get; init; }
}
