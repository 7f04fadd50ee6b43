using System.Runtime.InteropServices;

namespace Faultline.Physical;

/// <summary>
/// Per-frame metadata (the kernel's <c>struct page</c>): reference and map counts, kind, state flags, the owner and
/// index for the reverse map, and the split page-table lock used when the frame is a PTE table (<c>ptlock_ptr</c>).
/// </summary>
/// <remarks>
/// Ownership: every page-table entry mapping the frame holds one reference and one map count; a backing holds one
/// reference for each page it keeps; an unmap's gather holds the unmapped entry's reference until its TLB flush and
/// grace period (see <c>MmuGather</c>). A frame is freed when its reference count reaches zero.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal struct FrameInfo
{
    /// <summary><c>_refcount</c>: owners of the frame (mappings, in-flight faults).</summary>
    public int RefCount;
    /// <summary><c>_mapcount</c>: page-table entries that map the frame.</summary>
    public int MapCount;
    /// <summary>
    /// Pins (<c>pin_user_pages</c>, <c>FOLL_PIN</c>): a count of its own rather than the kernel's
    /// <c>GUP_PIN_COUNTING_BIAS</c> in the refcount, so "pinned" is exact. Each pin also holds a reference.
    /// </summary>
    public int PinCount;
    /// <summary>Split PTE-table lock word (0 free, 1 held), meaningful while <see cref="Kind"/> is PageTable.</summary>
    public int PteLock;
    /// <summary>State bits (<see cref="FrameFlags"/>); changed through <see cref="PhysicalMemory.SetFlags"/> and <see cref="PhysicalMemory.ClearFlags"/>.</summary>
    public int Flags;
    /// <summary>
    /// <c>page->mapping</c>: the anon_vma of an anonymous frame or the backing of a page-cache frame, for the reverse
    /// map; null while unowned. Set by the owner before the frame is published in a PTE.
    /// </summary>
    public object? Mapping;
    /// <summary><c>page->index</c>: the page offset within <see cref="Mapping"/>.</summary>
    public ulong Index;
    /// <summary>What the frame holds.</summary>
    public FrameKind Kind;
    /// <summary>The contents are known to be all zero (fresh, or cleared when freed), so a fault need not clear it.</summary>
    /// <remarks>Plain field: written by the freeing writer before the frame is pushed under the allocator's lock and read
    /// by the Cpu that popped it under the same lock, so the lock's release/acquire orders them.</remarks>
    public bool Zeroed;
    /// <summary>
    /// <c>folio->swap</c>: the swap entry (page-table form, flags clear) of a frame in a swap cache
    /// (<see cref="FrameFlags.SwapCache"/>); 0 otherwise. Written before the frame is published in the cache index
    /// (whose release store orders it) and cleared after it leaves it.
    /// </summary>
    public ulong SwapEntry;
    /// <summary>
    /// <c>folio->memcg_data</c>: the group charged for the frame (a huge block: its head, for the whole block), or null.
    /// Set before the frame is published; dropped by the free that ends it (<see cref="ChargeGroup.Uncharge"/>).
    /// </summary>
    public ChargeGroup? Charge;
    /// <summary>Pages charged with <see cref="Charge"/> (1, or a huge block's frames).</summary>
    public int ChargePages;
    /// <summary>The <c>memory.stat</c> line the charge counts in (anonymous, file or shmem).</summary>
    public FrameKind ChargeKind;
}
