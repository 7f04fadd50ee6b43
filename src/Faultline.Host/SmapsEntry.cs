namespace Faultline.Host;

/// <summary>
/// The per-VMA counters from <c>/proc/self/smaps</c> that the oracle compares. Start/End are the
/// real VMA bounds (not clipped): the counters cover the whole VMA and cannot be split.
/// </summary>
/// <param name="Start">VMA start.</param>
/// <param name="End">VMA end (exclusive).</param>
/// <param name="Perms">Permission string, e.g. "rw-p".</param>
/// <param name="SizeKb">"Size:" in KiB (virtual size).</param>
/// <param name="RssKb">"Rss:" in KiB (resident; pages mapped to the shared zero page are NOT counted, although pagemap reports them present; whether a read fault maps the zero page is <see cref="HostFacts.ReadFaultMapsZeroPage"/>).</param>
/// <param name="PrivateDirtyKb">"Private_Dirty:" in KiB (pages mapped once whose PTE or page is dirty).</param>
/// <param name="AnonymousKb">"Anonymous:" in KiB.</param>
/// <param name="ReferencedKb">"Referenced:" in KiB.</param>
/// <param name="AnonHugePagesKb">"AnonHugePages:" in KiB (THP-backed part).</param>
/// <param name="SwapKb">"Swap:" in KiB.</param>
/// <param name="VmFlags">The "VmFlags:" mnemonics, e.g. "rd wr mr mw me ac" ("ac" = VM_ACCOUNT).</param>
/// <param name="LazyFreeKb">"LazyFree:" in KiB (clean pages MADV_FREE marked).</param>
/// <param name="LockedKb">"Locked:" in KiB (the proportional share, as Pss, of the resident pages of a VM_LOCKED VMA: a page mapped twice counts half).</param>
public sealed record SmapsEntry(
    ulong Start,
    ulong End,
    string Perms,
    ulong SizeKb,
    ulong RssKb,
    ulong PrivateDirtyKb,
    ulong AnonymousKb,
    ulong ReferencedKb,
    ulong AnonHugePagesKb,
    ulong SwapKb,
    string VmFlags,
    ulong LazyFreeKb = 0,
    ulong LockedKb = 0);
