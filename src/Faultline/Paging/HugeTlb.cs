namespace Faultline.Paging;

/// <summary>
/// A Cpu's cache of 2 MiB translations, the x86 STLB's huge entries: consulted only when the 4 KiB
/// <see cref="SoftwareTlb"/> misses, it turns a miss in a huge-mapped block into a 4 KiB fill without a page-table walk.
/// Filled when a walk ends at a huge PMD leaf. Direct-mapped on the block number.
/// </summary>
/// <remarks>
/// <para>
/// Why a hit is safe: an entry stands for the 512 4 KiB entries the TLB could have filled from the PMD when the walk
/// read it, and it is dropped whenever any of them would be: <see cref="SoftwareTlb.Invalidate"/> of any page in its
/// block and every <see cref="SoftwareTlb.Flush"/> drop it too. Every change that removes or narrows a translation
/// (zap, mprotect, split-then-change, collapse, fork's write protection) bumps the TLB generation with its page range
/// before its frames can be reused, and the Cpu catches up before it looks here, so a hit is as current as a 4 KiB hit.
/// A split alone changes no translation (the PTEs copy the PMD), so an entry may outlive one and still be exact.
/// </para>
/// <para>
/// A hit fills the 4 KiB entry without setting the accessed bit again (as hardware holding a 2 MiB entry does not;
/// every clear of the bit here flushes, as <c>folio_referenced</c> does, which drops the block), and never grants a
/// write the cached PMD was not dirty for: that write walks and sets the dirty bit on the PMD.
/// </para>
/// <para>
/// Thread safety: only the owning Cpu's thread reads or writes it, like <see cref="SoftwareTlb"/>. The slots are
/// allocated on the first fill, so a Cpu that never meets a huge PMD pays nothing.
/// </para>
/// </remarks>
internal sealed class HugeTlb
{
    private const int BlockShift = PageGeometry.PmdShift - PageGeometry.PageShift;
    private const int SubpageMask = PageGeometry.EntriesPerTable - 1;

    private readonly int _entries;
    private HugeTlbEntry[]? _slots;
    private bool _filled; // a fill since the last flush: a flush of an unused cache clears nothing

    /// <summary>A cache of <paramref name="entries"/> blocks (a power of two).</summary>
    public HugeTlb(int entries)
    {
        Debug.Assert(entries > 0 && (entries & (entries - 1)) == 0);
        _entries = entries;
    }

    /// <summary>
    /// The 4 KiB entry the cached huge PMD implies for <paramref name="pageNumber"/>, if its block is cached and the entry
    /// permits <paramref name="kind"/> (a write only when the PMD was already dirty); false sends the miss to the walk.
    /// </summary>
    public bool TryGet(ulong pageNumber, AccessKind kind, out ulong pte)
    {
        pte = 0;
        ulong block = pageNumber >> BlockShift;
        if (_slots is not { } slots)
        {
            return false;
        }
        ref HugeTlbEntry slot = ref slots[(int)(block & (ulong)(_entries - 1))];
        if (slot.Tag != block + 1)
        {
            return false;
        }
        pte = PageTable.HugeSubpageEntry(slot.Pmd, (int)(pageNumber & SubpageMask));
        return Pte.Permits(pte, kind) && (kind != AccessKind.Write || (pte & Pte.Dirty) != 0);
    }

    /// <summary>Caches <paramref name="pmd"/>, a huge PMD leaf a walk for <paramref name="pageNumber"/> just found (accessed set).</summary>
    public void Fill(ulong pageNumber, ulong pmd)
    {
        ulong block = pageNumber >> BlockShift;
        HugeTlbEntry[] slots = _slots ??= new HugeTlbEntry[_entries];
        ref HugeTlbEntry slot = ref slots[(int)(block & (ulong)(_entries - 1))];
        slot.Tag = block + 1;
        slot.Pmd = pmd;
        _filled = true;
    }

    /// <summary>Drops the block holding <paramref name="pageNumber"/> if cached.</summary>
    public void Invalidate(ulong pageNumber)
    {
        if (!_filled)
        {
            return;
        }
        ulong block = pageNumber >> BlockShift;
        ref HugeTlbEntry slot = ref _slots![(int)(block & (ulong)(_entries - 1))];
        if (slot.Tag == block + 1)
        {
            slot = default;
        }
    }

    /// <summary>Drops every block.</summary>
    public void Flush()
    {
        if (_filled)
        {
            Array.Clear(_slots!);
            _filled = false;
        }
    }
}
