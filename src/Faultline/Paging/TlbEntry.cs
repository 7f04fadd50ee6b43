namespace Faultline.Paging;

/// <summary>
/// One software-TLB slot: the virtual page it translates, tagged separately for each permission (so a hit is one
/// compare), and where the page lies on the host. A tag is the page's address with the offset bits set
/// (<see cref="TagFor"/>), so the key of an access is two instructions (QEMU compares page addresses the same way);
/// 0 means no translation.
/// </summary>
internal unsafe struct TlbEntry
{
    /// <summary>Tag when reads are allowed.</summary>
    public ulong ReadTag;
    /// <summary>Tag when writes are allowed (the PTE is writable and already dirty).</summary>
    public ulong WriteTag;
    /// <summary>Tag when instruction fetches are allowed.</summary>
    public ulong ExecuteTag;
    /// <summary>
    /// The host address of the frame minus the guest address of the page (QEMU's <c>addend</c>): a guest address in
    /// the page plus this is its host address, with no masking of the page offset.
    /// </summary>
    public nint Addend;

    /// <summary>The tag of virtual page <paramref name="pageNumber"/>: its address with the page-offset bits set, never 0.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong TagFor(ulong pageNumber) => (pageNumber << PageGeometry.PageShift) | PageGeometry.PageOffsetMask;

    /// <summary>
    /// The tag a slot must hold for an access of <paramref name="size"/> bytes at <paramref name="address"/>: that of the
    /// page of its last byte (an add and an or). Looked up in the slot of its first byte's page, so one compare also
    /// rejects an access that crosses into the next page (no slot of page p holds the tag of page p + 1); it misses and
    /// is split. Never 0 (an empty slot). Only an access within <paramref name="size"/> bytes of 2^64 wraps, to page 0's
    /// tag, which lives in slot 0 while that access looks in the last slot (a TLB has at least two).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong KeyFor(ulong address, int size) => (address + (ulong)(size - 1)) | PageGeometry.PageOffsetMask;

    /// <summary>The tag of <paramref name="slot"/> for <paramref name="kind"/> (a constant kind folds to one load).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong TagOf(TlbEntry* slot, AccessKind kind) => kind switch
    {
        AccessKind.Read => slot->ReadTag,
        AccessKind.Write => slot->WriteTag,
        _ => slot->ExecuteTag,
    };
}
