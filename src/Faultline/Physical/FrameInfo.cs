using System.Runtime.InteropServices;

namespace Faultline.Physical;

/// <summary>
/// Per-frame metadata (the kernel's <c>struct page</c>): reference and map counts, kind, and the split
/// page-table lock used when the frame is a PTE table (<c>ptlock_ptr</c>).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct FrameInfo
{
    /// <summary><c>_refcount</c>: owners of the frame (mappings, in-flight faults).</summary>
    public int RefCount;
    /// <summary><c>_mapcount</c>: page-table entries that map the frame.</summary>
    public int MapCount;
    /// <summary>Split PTE-table lock word (0 free, 1 held), meaningful while <see cref="Kind"/> is PageTable.</summary>
    public int PteLock;
    /// <summary>What the frame holds.</summary>
    public FrameKind Kind;
    /// <summary>The contents are known to be all zero (fresh, or cleared when freed), so a fault need not clear it.</summary>
    /// <remarks>Plain field: written by the freeing writer before the frame is pushed under the allocator's lock and read
    /// by the Cpu that popped it under the same lock, so the lock's release/acquire orders them.</remarks>
    public bool Zeroed;
}
