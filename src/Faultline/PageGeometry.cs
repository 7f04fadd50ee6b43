namespace Faultline;

/// <summary>
/// The page geometry and address-space limits of a guest (x86-64 with 4-level paging), in one place: every layer
/// takes its page size, table shape and top of user space from here.
/// </summary>
/// <remarks>Constants and a pure function: safe from any thread, nothing to dispose.</remarks>
public static class PageGeometry
{
    /// <summary>log2 of <see cref="PageSize"/> (<c>PAGE_SHIFT</c>).</summary>
    public const int PageShift = 12;
    /// <summary>Bytes in a page and in a frame (<c>PAGE_SIZE</c>).</summary>
    public const int PageSize = 1 << PageShift;
    /// <summary>The offset bits of an address within its page (<c>~PAGE_MASK</c>).</summary>
    public const ulong PageOffsetMask = PageSize - 1;

    /// <summary>Address bits each table level translates.</summary>
    public const int TableIndexBits = 9;
    /// <summary>Entries in a page-table page (<c>PTRS_PER_PTE</c>, and every other level).</summary>
    public const int EntriesPerTable = 1 << TableIndexBits;
    /// <summary>log2 of the span of one PMD entry (<c>PMD_SHIFT</c>): one PTE table, or one huge page.</summary>
    public const int PmdShift = PageShift + TableIndexBits;
    /// <summary>log2 of the span of one PUD entry (<c>PUD_SHIFT</c>).</summary>
    public const int PudShift = PmdShift + TableIndexBits;
    /// <summary>log2 of the span of one PGD entry (<c>PGDIR_SHIFT</c>).</summary>
    public const int PgdShift = PudShift + TableIndexBits;
    /// <summary>Bytes one PMD entry maps (<c>PMD_SIZE</c>, 2 MiB).</summary>
    public const ulong PmdSize = 1UL << PmdShift;
    /// <summary>Bytes one PUD entry maps (<c>PUD_SIZE</c>, 1 GiB).</summary>
    public const ulong PudSize = 1UL << PudShift;
    /// <summary>Bytes one PGD entry maps (<c>PGDIR_SIZE</c>, 512 GiB).</summary>
    public const ulong PgdSize = 1UL << PgdShift;

    /// <summary>The end of the user half of the address space (2^47): addresses at or above it never map.</summary>
    public const ulong UserAddressEnd = 1UL << (PgdShift + TableIndexBits - 1);
    /// <summary>The end of what the page table can translate (2^48).</summary>
    public const ulong TranslatedAddressEnd = 1UL << (PgdShift + TableIndexBits);
    /// <summary><c>TASK_SIZE_MAX</c>: the highest end a mapping may have, one guard page below 2^47.</summary>
    public const ulong TaskSize = UserAddressEnd - PageSize;

    /// <summary>Rounds a byte count up to whole pages (<c>PAGE_ALIGN</c>); 0 when it overflows.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong PageAlign(ulong value) => (value + PageOffsetMask) & ~PageOffsetMask;
}
