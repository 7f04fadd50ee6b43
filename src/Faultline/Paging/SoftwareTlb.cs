using System.Numerics;

namespace Faultline.Paging;

/// <summary>
/// A Cpu's direct-mapped software TLB. Only its owner thread reads or writes it; coherence comes from the address
/// space's <see cref="Concurrency.TlbGeneration"/>, which the owner compares with the generation its contents are valid
/// for, and flushes on change: on entry to every plain access, and at a read scope's entry, quiescent points and misses
/// (a scope's hits do not compare; writers wait for those points instead).
/// </summary>
internal sealed unsafe class SoftwareTlb
{
    private readonly TlbEntry[] _storage;
    private readonly TlbEntry* _entries;
    private readonly ulong _mask;

    // One slot that stays empty (pinned, never filled): with mask 0 every page maps to it and misses (no tag is 0).
    private static readonly TlbEntry[] s_neverHitsStorage = GC.AllocateArray<TlbEntry>(1, pinned: true);

    /// <summary>
    /// A slot array of one empty slot: indexed with mask 0 it misses every page. What an ended read scope looks its
    /// pages up in, so its hit path needs no other check.
    /// </summary>
    public static readonly TlbEntry* NeverHits = (TlbEntry*)Unsafe.AsPointer(ref s_neverHitsStorage[0]);

    /// <summary>
    /// Creates a TLB with <paramref name="entries"/> slots (a power of two; at least two are made) and, when
    /// <paramref name="hugeEntries"/> is not 0, a <see cref="HugeTlb"/> of that many 2 MiB blocks behind it.
    /// </summary>
    public SoftwareTlb(int entries, int hugeEntries = 0)
    {
        Huge = hugeEntries > 0 ? new HugeTlb(hugeEntries) : null;
        // Two at least: TlbEntry.KeyFor's one wrapped key must not find page 0 in the slot it looks in.
        entries = Math.Max(entries, 2);
        // Pinned so the hit path indexes a raw pointer with no bounds check.
        _storage = GC.AllocateArray<TlbEntry>(entries, pinned: true);
        fixed (TlbEntry* p = _storage)
        {
            _entries = p;
        }
        _mask = (ulong)entries - 1;
        Debug.Assert(sizeof(TlbEntry) == 1 << EntryShift);
    }

    /// <summary>
    /// The 2 MiB translations consulted on a miss, or null when disabled. Invalidated and flushed with the 4 KiB slots
    /// (<see cref="Invalidate"/>, <see cref="Flush"/>), so every shootdown that drops a page drops its block too.
    /// </summary>
    public HugeTlb? Huge { get; }

    /// <summary>The slots, for the owner's inlined hit path.</summary>
    public TlbEntry* Entries => _entries;

    /// <summary>Slot count minus one.</summary>
    public ulong Mask => _mask;

    /// <summary>log2 of a slot's size: <see cref="SlotOf"/> indexes bytes, not slots.</summary>
    public const int EntryShift = 5;

    /// <summary>The mask <see cref="SlotOf"/> takes: slot count minus one, in bytes.</summary>
    public ulong OffsetMask => _mask << EntryShift;

    /// <summary>
    /// The slot of the page <paramref name="address"/> lies in, for the inlined hit paths: the page number's low bits
    /// taken straight as a byte offset (one rotate, one mask, no scaling). A rotate, not a shift: the bits it brings
    /// round to the top are masked off all the same (the mask is far below them), and with BMI2 it is one three-operand
    /// <c>rorx</c> that leaves the address in its register (a shift needs a copy first). The slots' address comes
    /// last, in the arguments and in the sum, so the JIT folds a field load of it into the add.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static TlbEntry* SlotOf(ulong address, ulong offsetMask, TlbEntry* entries) =>
        (TlbEntry*)((BitOperations.RotateRight(address, PageGeometry.PageShift - EntryShift) & offsetMask) + (ulong)entries);

    /// <summary>The slot a virtual page maps to.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public TlbEntry* Slot(ulong pageNumber) => _entries + (pageNumber & _mask);

    /// <summary>Drops the translation of one page if cached, and the 2 MiB translation of its block.</summary>
    public void Invalidate(ulong pageNumber)
    {
        Huge?.Invalidate(pageNumber);
        TlbEntry* slot = Slot(pageNumber);
        if (slot->ReadTag == TlbEntry.TagFor(pageNumber))
        {
            *slot = default;
        }
    }

    /// <summary>Drops every translation, 4 KiB and 2 MiB (a full flush).</summary>
    public void Flush()
    {
        Array.Clear(_storage);
        Huge?.Flush();
    }

    /// <summary>Fills the slot of a page from a PTE that permits at least a read.</summary>
    public void Fill(ulong pageNumber, ulong pte, nint hostPage)
    {
        TlbEntry* slot = Slot(pageNumber);
        ulong tag = TlbEntry.TagFor(pageNumber);
        slot->Addend = hostPage - (nint)(pageNumber << PageGeometry.PageShift);
        slot->ReadTag = tag;
        // A write hit needs the dirty bit already set, so the first write after a read fill walks and sets it.
        slot->WriteTag = (pte & (Pte.Writable | Pte.Dirty)) == (Pte.Writable | Pte.Dirty) ? tag : 0;
        slot->ExecuteTag = (pte & Pte.NoExecute) == 0 ? tag : 0;
    }
}
