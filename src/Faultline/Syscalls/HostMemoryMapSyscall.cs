using Faultline.Areas;
using Faultline.Backing;
using Faultline.Physical;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mmap</c> of host memory: what a device driver's <c>mmap</c> handler does with <c>remap_pfn_range</c> (a
/// framebuffer, a memory-mapped device), the VMA flagged <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c>. The
/// host pages are mapped by faults (<c>vmf_insert_pfn</c>), so the call is constant time whatever the length.
/// </summary>
internal sealed class HostMemoryMapSyscall
{
    /// <summary>The flags a driver sets on a pfn-mapped VMA.</summary>
    public const VmFlags HostMemoryFlags = VmFlags.Io | VmFlags.PfnMap | VmFlags.DontExpand | VmFlags.DontDump;

    private readonly MmapSyscall _mmap;

    /// <summary>Host-memory mappings made through <paramref name="mmap"/>.</summary>
    public HostMemoryMapSyscall(MmapSyscall mmap) => _mmap = mmap;

    /// <summary>
    /// Maps the host memory at <paramref name="host"/> (page-aligned, <paramref name="length"/> rounded up to whole
    /// pages) at <paramref name="address"/> as mmap places it. EINVAL for a private or anonymous mapping (a
    /// copy-on-write view of host memory is not supported), or a null, unaligned or unnameable host address; then
    /// mmap's own errors.
    /// </summary>
    public Errno Map(ulong address, ulong length, Protection protection, MapFlags flags, nint host, out ulong mapped)
    {
        mapped = 0;
        // MAP_SHARED or MAP_SHARED_VALIDATE only. Linux lets a driver's MAP_PRIVATE pfn mapping copy on write (the
        // vm_pgoff == pfn convention of remap_pfn_range), a rarity no emulator needs; refusing keeps every entry of the
        // VMA a host page.
        if ((flags & MapFlags.Anonymous) != 0 || ((int)flags & 0x0f) is not (1 or 3))
        {
            return Errno.EINVAL;
        }
        if (length == 0)
        {
            return Errno.EINVAL;
        }
        ulong start = (ulong)host;
        ulong pages = PageGeometry.PageAlign(length) >> PageGeometry.PageShift;
        if (pages == 0)
        {
            // The length wraps when rounded up: mmap's answer.
            return Errno.ENOMEM;
        }
        if (start == 0 || (start & PageGeometry.PageOffsetMask) != 0 || start >= HostWindow.AddressLimit
            || pages > (HostWindow.AddressLimit - start) >> PageGeometry.PageShift)
        {
            return Errno.EINVAL;
        }
        return _mmap.MapBacking(address, length, protection, flags, new HostMemoryBacking(host, pages), 0, HostMemoryFlags, out mapped);
    }
}
