namespace Faultline.Paging;

/// <summary>
/// <c>swp_entry_t</c>: a swap type and an offset within it, and its page-table form (<c>swp_entry_to_pte</c>,
/// <c>pte_to_swp_entry</c>). In a PTE the offset takes bits 12-51 (the frame field) and the type bits 52-56; bits 1-3
/// carry the entry's flags (<see cref="Pte.SwapFlags"/>). Types from <see cref="MaxSwapFiles"/> up are the kernel's
/// non-swap entries (hwpoison, migration, device-private, PTE markers), reserved with the kernel's numbering even though
/// nothing here makes them yet, so a real area never takes their numbers.
/// </summary>
/// <param name="Type">The swap area (<c>swp_type</c>) or a non-swap entry type.</param>
/// <param name="Offset">The slot within the area (<c>swp_offset</c>); slot 0 of an area is never handed out (the kernel's header page), so no entry encodes as 0.</param>
internal readonly record struct SwapEntry(int Type, long Offset)
{
    /// <summary><c>MAX_SWAPFILES_SHIFT</c>: bits of the type.</summary>
    public const int TypeBits = 5;
    /// <summary>Where the type starts in a PTE.</summary>
    public const int TypeShift = 52;
    /// <summary>The largest offset an entry can hold (40 bits).</summary>
    public const long MaxOffset = (1L << 40) - 1;
    /// <summary><c>MAX_SWAPFILES</c>: 32 types less the 9 the kernel reserves for non-swap entries.</summary>
    public const int MaxSwapFiles = (1 << TypeBits) - DeviceTypes - MigrationTypes - 1 - 1;
    /// <summary><c>SWP_HWPOISON</c>.</summary>
    public const int HwPoison = MaxSwapFiles;
    /// <summary><c>SWP_MIGRATION_READ</c> (then <c>_READ_EXCLUSIVE</c>, <c>_WRITE</c>).</summary>
    public const int MigrationRead = HwPoison + 1;
    /// <summary><c>SWP_DEVICE_WRITE</c> (then <c>_READ</c>, <c>_EXCLUSIVE_WRITE</c>, <c>_EXCLUSIVE_READ</c>).</summary>
    public const int DeviceWrite = MigrationRead + MigrationTypes;
    /// <summary><c>SWP_PTE_MARKER</c>: the last type (uffd-wp markers, guard markers, poison markers).</summary>
    public const int PteMarker = DeviceWrite + DeviceTypes;

    private const int MigrationTypes = 3;
    private const int DeviceTypes = 4;
    private const ulong TypeMask = ((1UL << TypeBits) - 1) << TypeShift;

    /// <summary><c>non_swap_entry</c>: a type no swap area can have.</summary>
    public bool IsNonSwap => Type >= MaxSwapFiles;

    /// <summary><c>swp_entry_to_pte</c>, without flag bits.</summary>
    public ulong ToPte()
    {
        Debug.Assert((uint)Type < 1 << TypeBits && Offset is >= 0 and <= MaxOffset && (Type != 0 || Offset != 0));
        return ((ulong)Type << TypeShift) | ((ulong)Offset << PageGeometry.PageShift);
    }

    /// <summary><c>pte_to_swp_entry</c> of an entry for which <see cref="Pte.IsSwap"/> is true; flag bits are ignored.</summary>
    public static SwapEntry FromPte(ulong pte)
    {
        Debug.Assert(Pte.IsSwap(pte));
        return new SwapEntry((int)((pte & TypeMask) >> TypeShift), (long)((pte & Pte.FrameMask) >> PageGeometry.PageShift));
    }
}
