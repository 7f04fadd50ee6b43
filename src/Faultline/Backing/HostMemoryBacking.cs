using Faultline.Physical;

namespace Faultline.Backing;

/// <summary>
/// Host memory mapped into the guest (a device driver's <c>mmap</c> handler with <c>remap_pfn_range</c>, or one whose
/// <c>fault</c> calls <c>vmf_insert_pfn</c>): a page-aligned host buffer whose pages are <see cref="HostWindow"/> frames.
/// Its VMAs carry <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c>; a fault maps the host page itself
/// (<c>HostMemoryFault</c>), so nothing is allocated, refcounted or freed, and no VMA needs notifying.
/// </summary>
/// <remarks>
/// The host buffer belongs to the caller, who keeps it alive until every VMA over it is gone (see
/// <c>AddressSpace.MapHostMemory</c>). Immutable, so any thread may read it.
/// </remarks>
internal sealed class HostMemoryBacking : IBacking
{
    private readonly nint _host;
    private readonly ulong _pages;

    /// <summary>The backing of the <paramref name="pages"/> pages at the page-aligned host address <paramref name="host"/>.</summary>
    public HostMemoryBacking(nint host, ulong pages)
    {
        Debug.Assert(((ulong)host & PageGeometry.PageOffsetMask) == 0 && pages > 0);
        _host = host;
        _pages = pages;
    }

    /// <inheritdoc />
    public bool IsAnonymous => false;

    /// <inheritdoc />
    /// <remarks>Inserting a pfn reads only this immutable object and the PTE (under <c>pte_map_lock</c>).</remarks>
    public bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public string MapsName => "[host]";

    /// <summary>
    /// The window frame of page <paramref name="pageOffset"/>, or -1 past the end of the buffer (a mapping grown
    /// past it cannot exist: <c>VM_DONTEXPAND</c>; the check keeps a stray offset from naming foreign host memory).
    /// </summary>
    public long FrameAt(ulong pageOffset) =>
        pageOffset < _pages ? HostWindow.FrameOf(_host + (nint)(pageOffset << PageGeometry.PageShift)) : -1;

    /// <inheritdoc />
    /// <remarks>
    /// Host memory has no frames to hand out: the fault handler maps its pages directly. A caller that asks anyway
    /// gets <c>VM_FAULT_SIGBUS</c>, as <c>do_fault</c> answers for a <c>remap_pfn_range</c> VMA without a fault handler.
    /// </remarks>
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn)
    {
        pfn = -1;
        return BackingFaultStatus.SigBus;
    }

    /// <inheritdoc />
    public void Opened(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public void Closed(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset) => true;
}
