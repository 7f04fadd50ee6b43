namespace Faultline.Backing;

/// <summary>
/// What backs a VMA (the kernel's <c>vm_ops</c> plus <c>vm_file</c>, gVisor's <c>Mappable</c>): how its pages are
/// found on a fault, its name in the maps, whether a speculative fault may handle it without the mmap lock, and the
/// notifications the control plane sends as VMAs start and stop using it.
/// </summary>
/// <remarks>
/// The notifications run with the mmap lock held for write, inside the writer's edit, so they cannot fail; a backing
/// that must refuse an edit does it in <see cref="MaySplit"/>, which is asked while nothing has changed yet.
/// </remarks>
internal interface IBacking
{
    /// <summary>True for anonymous memory (<c>vma_is_anonymous</c>: no <c>vm_ops</c>); its faults never reach <see cref="Fault"/>.</summary>
    bool IsAnonymous { get; }

    /// <summary>
    /// True when a fault on this backing may run without the mmap lock: the per-<c>vm_ops</c> whitelist asked for in
    /// the SPF v2 review, 2017-08 (a backing whose fault may touch state the mmap lock protects must say false).
    /// </summary>
    bool IsSpeculativeSafe { get; }

    /// <summary>The name shown in the maps (empty for private anonymous memory).</summary>
    string MapsName { get; }

    /// <summary>
    /// <c>vm_ops->fault</c>: the frame holding page <paramref name="pageOffset"/> of the backing. On
    /// <see cref="BackingFaultStatus.Ok"/> <paramref name="pfn"/> carries one reference taken for the caller, who maps
    /// it (the reference then belongs to the mapping) or drops it. With <paramref name="speculative"/> set the caller
    /// holds no mmap lock and must not sleep: answer <see cref="BackingFaultStatus.Retry"/> instead of blocking.
    /// </summary>
    BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn);

    /// <summary>
    /// <c>vm_ops->open</c>: a VMA over pages [<paramref name="pageOffset"/>, +<paramref name="pages"/>) of the backing
    /// starts using it (a new mapping, or a piece made by a split, merge or protection change).
    /// </summary>
    void Opened(ulong pageOffset, ulong pages);

    /// <summary><c>vm_ops->close</c>: a VMA over those pages stops using it (unmapped, or replaced by its pieces).</summary>
    void Closed(ulong pageOffset, ulong pages);

    /// <summary>
    /// <c>vm_ops->may_split</c>: may the VMA over pages [<paramref name="pageOffset"/>, +<paramref name="pages"/>) be
    /// split at page <paramref name="splitPageOffset"/>? A refusal makes munmap, mprotect and MAP_FIXED fail with EINVAL.
    /// </summary>
    bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset);
}
