namespace Faultline.Paging;

/// <summary>
/// x86-64-style page-table entry encoding, used at every level (pgd/pud/pmd/pte). Bits: 0 present, 1 writable,
/// 2 user, 5 accessed, 6 dirty, 7 huge (PSE, upper levels only), 8 PROT_NONE (the kernel's <c>_PAGE_PROTNONE</c>:
/// not present to the hardware walker, but still mapping its frame), 9 special (the kernel's <c>_PAGE_SPECIAL</c>,
/// a frame with no refcounting such as the zero frame), 10 uffd-wp (the kernel's <c>_PAGE_UFFD_WP</c>, software bit 2),
/// 12-51 frame number, 63 no-execute. A non-zero entry that
/// is neither present nor PROT_NONE is a swap entry (<see cref="SwapEntry"/>: offset in bits 12-51, type in bits 52-56,
/// so neither overlaps a bit a walker tests on a present entry: Accessed, Dirty, Special, 10, 11, 57, 58 and 63 are
/// clear in every swap entry). Its own flags sit where x86 keeps them: <see cref="SwapSoftDirty"/> in bit 1
/// (<c>_PAGE_SWP_SOFT_DIRTY</c> = <c>_PAGE_RW</c>), <see cref="SwapUffdWp"/> in bit 2 (<c>_PAGE_SWP_UFFD_WP</c> =
/// <c>_PAGE_USER</c>), <see cref="SwapExclusive"/> in bit 3 (<c>_PAGE_SWP_EXCLUSIVE</c> = <c>_PAGE_PWT</c>); every walker
/// tests <see cref="MapsFrame"/> before it reads Writable or User. Write tracking uses software bits the hardware walker
/// ignores: 11 soft-dirty (x86's <c>_PAGE_SOFT_DIRTY</c>), 57 write-tracked (x86's fourth software bit: the
/// dirty log armed the entry read-only, the next write fault clears it; kept apart from bit 10 so a user-fault
/// channel's write protection and the dirty log never consume each other's state), 58 write-watched (x86's fifth
/// software bit: a write watch armed the entry read-only, the next write fault notifies and clears it). An entry
/// with bit 10, 57 or 58 set is never writable.
/// </summary>
internal static class Pte
{
    public const ulong Present = 1UL << 0;
    public const ulong Writable = 1UL << 1;
    public const ulong User = 1UL << 2;
    public const ulong Accessed = 1UL << 5;
    public const ulong Dirty = 1UL << 6;
    public const ulong Huge = 1UL << 7;
    public const ulong ProtNone = 1UL << 8;
    public const ulong Special = 1UL << 9;
    /// <summary>
    /// <c>_PAGE_UFFD_WP</c>: write-protected for a user-fault channel (a write faults to the handler). Bit 10, outside
    /// the swap-entry fields; a swap entry carries the protection in <see cref="SwapUffdWp"/>, as x86 does.
    /// </summary>
    public const ulong UffdWp = 1UL << 10;
    public const ulong NoExecute = 1UL << 63;
    /// <summary>Armed by the dirty log: read-only until a write fault clears it.</summary>
    public const ulong WriteTracked = 1UL << 57;
    /// <summary><c>_PAGE_SOFT_DIRTY</c>: set with <see cref="Dirty"/> by every fault that dirties (<c>pte_mkdirty</c>), cleared by <c>clear_refs</c>.</summary>
    public const ulong SoftDirty = 1UL << 11;
    /// <summary>Armed by a write watch: read-only until a write fault notifies the watch and clears it.</summary>
    public const ulong WriteWatched = 1UL << 58;
    /// <summary>The bits that keep an entry read-only until a write fault (<see cref="WriteTracked"/>, <see cref="WriteWatched"/>).</summary>
    public const ulong WriteNotify = WriteTracked | WriteWatched;
    /// <summary><c>pte_mkdirty</c> on x86: the hardware dirty bit and the soft-dirty bit together.</summary>
    public const ulong DirtyBits = Dirty | SoftDirty;
    public const ulong FrameMask = 0x000F_FFFF_FFFF_F000UL;

    /// <summary>Flags of a page-table (non-leaf) entry: present, writable, user; permissions are decided at the leaf.</summary>
    public const ulong TableFlags = Present | Writable | User | Accessed;

    /// <summary><c>pte_none</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsNone(ulong entry) => entry == 0;

    /// <summary><c>pte_present</c> as the kernel defines it: present or PROT_NONE (both map a frame).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool MapsFrame(ulong entry) => (entry & (Present | ProtNone)) != 0;

    /// <summary>Present to the (software) MMU: an access may use it without a fault, subject to permission bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsPresent(ulong entry) => (entry & Present) != 0;

    /// <summary>A swap entry (<c>is_swap_pte</c>): non-zero, not mapping a frame.</summary>
    public static bool IsSwap(ulong entry) => entry != 0 && !MapsFrame(entry);

    /// <summary>The frame number an entry maps or points to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static long Frame(ulong entry) => (long)((entry & FrameMask) >> PageGeometry.PageShift);

    /// <summary>An entry pointing to a lower-level table page.</summary>
    public static ulong MakeTable(long pfn) => ((ulong)pfn << PageGeometry.PageShift) | TableFlags;

    /// <summary>
    /// <c>mk_pte(page, vma_page_prot)</c>: a leaf entry for a frame with the page protection the VMA's flags give.
    /// <paramref name="writable"/> is decided by the caller (private mappings start read-only for COW).
    /// </summary>
    public static ulong MakeLeaf(long pfn, PageProtection protection, bool writable, bool special)
    {
        ulong entry = ((ulong)pfn << PageGeometry.PageShift) | User;
        entry |= protection.IsAccessible ? Present : ProtNone;
        if (writable && protection.Write)
        {
            entry |= Writable;
        }
        if (!protection.Execute)
        {
            entry |= NoExecute;
        }
        if (special)
        {
            entry |= Special;
        }
        return entry;
    }

    /// <summary><c>pte_modify</c>: same frame, dirty, accessed, uffd-wp and write-tracking bits (<c>_PAGE_CHG_MASK</c>), new protection.</summary>
    public static ulong Modify(ulong entry, PageProtection protection, bool writable)
    {
        ulong kept = entry & (FrameMask | Accessed | Dirty | Special | SoftDirty | WriteNotify | UffdWp);
        kept |= User;
        kept |= protection.IsAccessible ? Present : ProtNone;
        if (writable && protection.Write && (entry & (WriteNotify | UffdWp)) == 0)
        {
            kept |= Writable;
        }
        if (!protection.Execute)
        {
            kept |= NoExecute;
        }
        return kept;
    }

    /// <summary>True when the entry allows the access kind without a fault.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Permits(ulong entry, AccessKind kind) => kind switch
    {
        AccessKind.Write => (entry & (Present | Writable)) == (Present | Writable),
        AccessKind.Execute => (entry & (Present | NoExecute)) == Present,
        _ => (entry & Present) != 0,
    };

    /// <summary><c>_PAGE_SWP_SOFT_DIRTY</c>: a swap entry's soft-dirty bit (bit 1, x86's <c>_PAGE_RW</c>).</summary>
    public const ulong SwapSoftDirty = 1UL << 1;
    /// <summary><c>_PAGE_SWP_UFFD_WP</c>: a swap entry's user-fault write protection (bit 2, x86's <c>_PAGE_USER</c>).</summary>
    public const ulong SwapUffdWp = 1UL << 2;
    /// <summary>
    /// <c>_PAGE_SWP_EXCLUSIVE</c> (bit 3, x86's <c>_PAGE_PWT</c>): the page was exclusive to this entry when it was
    /// unmapped, so a swap-in that finds no other user of the entry may map it writable.
    /// </summary>
    public const ulong SwapExclusive = 1UL << 3;
    /// <summary>The flag bits a swap entry carries beside its type and offset.</summary>
    public const ulong SwapFlags = SwapSoftDirty | SwapUffdWp | SwapExclusive;
}
