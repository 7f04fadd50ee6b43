namespace Faultline.Host;

/// <summary>
/// Linux x86-64 ABI constants for the memory-management system calls. The values are the
/// kernel's UAPI numbers (asm-generic/mman-common.h, asm/mman.h, linux/mman.h), spelled with
/// their C names so that code ported from or compared against the kernel stays greppable.
/// </summary>
public static class Linux
{
    /// <summary>Size of a base page on x86-64.</summary>
    public const ulong PAGE_SIZE = 4096;

    /// <summary>log2 of <see cref="PAGE_SIZE"/>.</summary>
    public const int PAGE_SHIFT = 12;

    /// <summary>Size of a PMD-level (transparent huge) page on x86-64.</summary>
    public const ulong HPAGE_PMD_SIZE = 2UL * 1024 * 1024;

    /// <summary>
    /// TASK_SIZE for a 4-level-paging x86-64 process: the top of user space is one page below
    /// 2^47 (the last page is kept unmapped to guard against the SYSRET non-canonical bug).
    /// </summary>
    public const ulong TASK_SIZE = 0x7FFF_FFFF_F000;

    /// <summary>No access.</summary>
    public const int PROT_NONE = 0x0;
    /// <summary>Page may be read.</summary>
    public const int PROT_READ = 0x1;
    /// <summary>Page may be written.</summary>
    public const int PROT_WRITE = 0x2;
    /// <summary>Page may be executed.</summary>
    public const int PROT_EXEC = 0x4;
    /// <summary>Page may be used for atomic ops (a no-op on x86, but accepted by mmap/mprotect).</summary>
    public const int PROT_SEM = 0x8;
    /// <summary>mprotect only: extend the change down to the start of a VM_GROWSDOWN mapping.</summary>
    public const int PROT_GROWSDOWN = 0x0100_0000;
    /// <summary>mprotect only: extend the change up to the end of a VM_GROWSUP mapping.</summary>
    public const int PROT_GROWSUP = 0x0200_0000;

    /// <summary>Share changes.</summary>
    public const int MAP_SHARED = 0x01;
    /// <summary>Changes are private (copy-on-write).</summary>
    public const int MAP_PRIVATE = 0x02;
    /// <summary>Shared mapping whose unknown flags are rejected with EOPNOTSUPP instead of ignored.</summary>
    public const int MAP_SHARED_VALIDATE = 0x03;
    /// <summary>Mask of the mapping-type bits (SHARED / PRIVATE / SHARED_VALIDATE).</summary>
    public const int MAP_TYPE = 0x0F;
    /// <summary>Interpret addr exactly, replacing whatever is there.</summary>
    public const int MAP_FIXED = 0x10;
    /// <summary>Not backed by a file; fd is ignored (should be -1).</summary>
    public const int MAP_ANONYMOUS = 0x20;
    /// <summary>Only give out 32-bit addresses (x86-64 specific).</summary>
    public const int MAP_32BIT = 0x40;
    /// <summary>Stack-like segment (VM_GROWSDOWN).</summary>
    public const int MAP_GROWSDOWN = 0x0100;
    /// <summary>Ignored by the kernel (historic ETXTBSY).</summary>
    public const int MAP_DENYWRITE = 0x0800;
    /// <summary>Ignored by the kernel (historic).</summary>
    public const int MAP_EXECUTABLE = 0x1000;
    /// <summary>Pages are locked (VM_LOCKED).</summary>
    public const int MAP_LOCKED = 0x2000;
    /// <summary>Do not account the mapping against the commit limit (no VM_ACCOUNT).</summary>
    public const int MAP_NORESERVE = 0x4000;
    /// <summary>Prefault the page tables.</summary>
    public const int MAP_POPULATE = 0x8000;
    /// <summary>Do not block on IO (only meaningful with MAP_POPULATE).</summary>
    public const int MAP_NONBLOCK = 0x10000;
    /// <summary>Give out an address suitable for a stack (currently a no-op).</summary>
    public const int MAP_STACK = 0x20000;
    /// <summary>Create a huge-page (hugetlbfs) mapping.</summary>
    public const int MAP_HUGETLB = 0x40000;
    /// <summary>Synchronous page faults for DAX (only with MAP_SHARED_VALIDATE).</summary>
    public const int MAP_SYNC = 0x80000;
    /// <summary>Like MAP_FIXED but fails with EEXIST instead of replacing an existing mapping.</summary>
    public const int MAP_FIXED_NOREPLACE = 0x10_0000;
    /// <summary>Leave pages uninitialized (only with CONFIG_MMAP_ALLOW_UNINITIALIZED; ignored otherwise).</summary>
    public const int MAP_UNINITIALIZED = 0x400_0000;

    /// <summary>No special treatment.</summary>
    public const int MADV_NORMAL = 0;
    /// <summary>Expect random page references.</summary>
    public const int MADV_RANDOM = 1;
    /// <summary>Expect sequential page references.</summary>
    public const int MADV_SEQUENTIAL = 2;
    /// <summary>Will need these pages.</summary>
    public const int MADV_WILLNEED = 3;
    /// <summary>Drop the pages; private anonymous memory reads back as zeroes afterwards.</summary>
    public const int MADV_DONTNEED = 4;
    /// <summary>Free pages lazily (private anonymous only).</summary>
    public const int MADV_FREE = 8;
    /// <summary>Remove pages and backing store (shared memory).</summary>
    public const int MADV_REMOVE = 9;
    /// <summary>Do not inherit across fork.</summary>
    public const int MADV_DONTFORK = 10;
    /// <summary>Undo MADV_DONTFORK.</summary>
    public const int MADV_DOFORK = 11;
    /// <summary>Worth backing with huge pages.</summary>
    public const int MADV_HUGEPAGE = 14;
    /// <summary>Not worth backing with huge pages.</summary>
    public const int MADV_NOHUGEPAGE = 15;
    /// <summary>Exclude from core dumps.</summary>
    public const int MADV_DONTDUMP = 16;
    /// <summary>Undo MADV_DONTDUMP.</summary>
    public const int MADV_DODUMP = 17;

    /// <summary>mremap: the mapping may be moved.</summary>
    public const int MREMAP_MAYMOVE = 1;
    /// <summary>mremap: move to the given new address (requires MREMAP_MAYMOVE).</summary>
    public const int MREMAP_FIXED = 2;
    /// <summary>mremap: move but leave the old range mapped (empty).</summary>
    public const int MREMAP_DONTUNMAP = 4;

    /// <summary>prctl option to name anonymous VMAs ("[anon:name]" in maps).</summary>
    public const int PR_SET_VMA = 0x53564D41;
    /// <summary>PR_SET_VMA sub-option: set an anonymous VMA name.</summary>
    public const int PR_SET_VMA_ANON_NAME = 0;
    /// <summary>prctl option: query THP disable for the process.</summary>
    public const int PR_GET_THP_DISABLE = 42;
    /// <summary>prctl option: disable THP for the process.</summary>
    public const int PR_SET_THP_DISABLE = 41;
}
