namespace Faultline.Backing;

/// <summary>
/// The backing of a memory-mapped I/O region (a driver's <c>io_remap_pfn_range</c> mapping, <c>VM_IO | VM_PFNMAP</c>):
/// no page ever exists, so the fault paths never install a PTE for it; a fault on it is an access to
/// <see cref="Device"/>, performed by the fault path under the lock that keeps the VMA in place.
/// </summary>
/// <remarks>Immutable; shared by every VMA made from one mapping (splits, fork), so all of them reach the same device.</remarks>
internal sealed class DeviceBacking : IBacking
{
    /// <summary>A backing over <paramref name="device"/>, shown in the maps as <paramref name="name"/>.</summary>
    public DeviceBacking(IMmioDevice device, string name)
    {
        Device = device;
        MapsName = name;
    }

    /// <summary>The device every access in the region reaches.</summary>
    public IMmioDevice Device { get; }

    /// <inheritdoc />
    public bool IsAnonymous => false;

    /// <inheritdoc />
    /// <remarks>The device is reached with the VMA read-locked, never through state the mmap lock protects.</remarks>
    public bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public string MapsName { get; }

    /// <inheritdoc />
    /// <remarks>A <c>VM_PFNMAP</c> VMA without <c>vm_ops->fault</c>: no page to give (<c>do_fault</c>'s SIGBUS).</remarks>
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn)
    {
        pfn = 0;
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
