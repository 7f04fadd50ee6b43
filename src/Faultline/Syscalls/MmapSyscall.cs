using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mmap</c> of anonymous memory, private or shared, and of guest files (<c>ksys_mmap_pgoff</c>, <c>do_mmap</c>,
/// <c>mmap_region</c>; shared memory gets a shmem object of its own, <c>shmem_zero_setup</c>) with Linux's checks and errno values. Everything is validated first; after that the call cannot fail, so a failed call changes nothing.
/// </summary>
internal sealed class MmapSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly RegionUnmapper _unmapper;
    private readonly UnmappedAreaSearch _search;
    private readonly PagePopulator _populator;
    private readonly object _owner;

    /// <summary>
    /// <c>mmap</c> over <paramref name="mm"/>; <paramref name="owner"/> is the object a call on a disposed address
    /// space names in its <see cref="ObjectDisposedException"/>.
    /// </summary>
    public MmapSyscall(MemoryDescriptor mm, VmaEditor editor, RegionUnmapper unmapper, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _unmapper = unmapper;
        _search = new UnmappedAreaSearch(mm);
        _populator = populator;
        _owner = owner;
    }

    /// <summary>
    /// Maps anonymous memory (a new <see cref="SharedMemoryObject"/> for MAP_SHARED); <paramref name="mapped"/> is the start on success. A locked mapping, or one asked for
    /// with MAP_POPULATE without MAP_NONBLOCK, is then populated (<c>mm_populate</c>, errors ignored).
    /// </summary>
    public Errno Map(ulong address, ulong length, Protection protection, MapFlags flags, out ulong mapped)
    {
        mapped = 0;
        _mm.SharedCounters.AddShared(VmEvent.MapCall);
        Errno invalid = Validate(ref address, ref length, flags);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        if ((flags & MapFlags.Shared) != 0)
        {
            // do_mmap: shared anonymous memory starts at page offset 0 of its own shmem object (shmem_zero_setup).
            var shmem = new SharedMemoryObject(_mm.Memory, length >> PageGeometry.PageShift);
            return InsertMapping(address, length, VmFlagBits.ForMmap(protection, flags), flags, shmem, 0, out mapped);
        }
        return InsertMapping(address, length, VmFlagBits.ForMmap(protection, flags), flags, AnonymousBacking.Instance, null, out mapped);
    }

    /// <summary>
    /// <c>mmap</c> of <paramref name="backing"/> from page <paramref name="pageOffset"/> on (a file mapping's
    /// <c>vm_pgoff</c>), private or shared.
    /// </summary>
    public Errno MapBacking(ulong address, ulong length, Protection protection, MapFlags flags, IBacking backing, ulong pageOffset,
        out ulong mapped) => MapBacking(address, length, protection, flags, backing, pageOffset, VmFlags.None, out mapped);

    /// <summary>
    /// <see cref="MapBacking(ulong, ulong, Protection, MapFlags, IBacking, ulong, out ulong)"/> with the flags a
    /// driver's <c>mmap</c> sets on the new VMA (<c>VM_IO | VM_PFNMAP</c> and kin: devices, host memory).
    /// </summary>
    public Errno MapBacking(ulong address, ulong length, Protection protection, MapFlags flags, IBacking backing, ulong pageOffset,
        VmFlags driverFlags, out ulong mapped)
    {
        mapped = 0;
        _mm.SharedCounters.AddShared(VmEvent.MapCall);
        if ((flags & MapFlags.Anonymous) != 0 || backing.IsAnonymous || ((int)flags & 0x0f) is not (1 or 2 or 3))
        {
            return Errno.EINVAL;
        }
        Errno invalid = ValidateRange(ref address, ref length, flags);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        // do_mmap: the last page offset must not wrap.
        if (pageOffset + (length >> PageGeometry.PageShift) < pageOffset)
        {
            return Errno.EOVERFLOW;
        }
        return InsertMapping(address, length, VmFlagBits.ForMmap(protection, flags) | driverFlags, flags, backing, pageOffset, out mapped);
    }

    /// <summary>
    /// <c>mmap</c> of a memory-mapped I/O region (a driver's <c>mmap</c> doing <c>io_remap_pfn_range</c>): a shared
    /// mapping of <paramref name="backing"/> from page <paramref name="pageOffset"/> of the device, flagged
    /// <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c>. A private mapping is EINVAL, as drivers such as VFIO's
    /// (<c>vfio_pci_core_mmap</c>) refuse one: copy-on-write of device registers has no meaning.
    /// </summary>
    public Errno MapDevice(ulong address, ulong length, Protection protection, MapFlags flags, DeviceBacking backing, ulong pageOffset,
        out ulong mapped)
    {
        mapped = 0;
        if (((int)flags & 0x0f) is not (1 or 3))
        {
            _mm.SharedCounters.AddShared(VmEvent.MapCall);
            return Errno.EINVAL;
        }
        // Before the VMA is published: a Cpu's miss path may then go to the device without a first, unarmed fault.
        _mm.NoteDeviceMapping();
        return MapBacking(address, length, protection, flags, backing, pageOffset, VmFlags.Io | VmFlags.PfnMap | VmFlags.DontExpand | VmFlags.DontDump,
            out mapped);
    }

    /// <summary>
    /// <c>mmap</c> of a guest file from byte <paramref name="offset"/> (<paramref name="file"/> null: a closed file), with
    /// the checks of <c>sys_mmap</c>, <c>ksys_mmap_pgoff</c> and <c>do_mmap</c> in Linux's order: an unaligned offset
    /// EINVAL, a closed file EBADF (MAP_ANONYMOUS ignores the file), MAP_HUGETLB on a regular file EINVAL, the range
    /// as for anonymous memory, an offset whose last page overflows EOVERFLOW, then the file's checks
    /// (<see cref="FileMapChecks"/>). A file in another address space's guest RAM is ENODEV (it has no <c>mmap</c> here).
    /// </summary>
    public Errno MapFile(ulong address, ulong length, Protection protection, MapFlags flags, FileBacking? file, long offset,
        out ulong mapped)
    {
        mapped = 0;
        if ((offset & (long)PageGeometry.PageOffsetMask) != 0)
        {
            _mm.SharedCounters.AddShared(VmEvent.MapCall);
            return Errno.EINVAL;
        }
        if ((flags & MapFlags.Anonymous) != 0)
        {
            // ksys_mmap_pgoff: with MAP_ANONYMOUS the descriptor is never looked at.
            return Map(address, length, protection, flags, out mapped);
        }
        _mm.SharedCounters.AddShared(VmEvent.MapCall);
        if (file is null)
        {
            return Errno.EBADF;
        }
        if ((flags & MapFlags.HugeTlb) != 0)
        {
            return Errno.EINVAL;
        }
        Errno invalid = ValidateRange(ref address, ref length, flags);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        ulong pageOffset = (ulong)offset >> PageGeometry.PageShift;
        if (pageOffset + (length >> PageGeometry.PageShift) < pageOffset || !FileMapChecks.OffsetFits(offset, length))
        {
            return Errno.EOVERFLOW;
        }
        Errno refused = FileMapChecks.Check(protection, ref flags, file.Cache.CanWrite, out VmFlags vmFlags);
        if (refused != Errno.None)
        {
            return refused;
        }
        if (!file.SharesMemory(_mm.Memory))
        {
            return Errno.ENODEV;
        }
        return InsertMapping(address, length, vmFlags, flags, file, pageOffset, out mapped);
    }

    // mmap_region: places the range, unmaps what MAP_FIXED replaces and inserts the new VMA (anonymous memory's page
    // offset is its start in pages, known only once placed).
    private Errno InsertMapping(ulong address, ulong length, VmFlags vmFlags, MapFlags flags, IBacking backing, ulong? pageOffset,
        out ulong mapped)
    {
        mapped = 0;
        _mm.EnterWriteUnlessExiting(_owner);
        List<UserFaultNotice>? unmapEvents = null;
        try
        {
            vmFlags |= _mm.DefaultFlags;
            // __mmap_complete: a new (or merged-into) VMA is soft-dirty, so a tracker can tell an area unmapped and
            // mapped again in place from one left alone.
            vmFlags |= _mm.Settings.SoftDirty ? VmFlags.SoftDirty : VmFlags.None;
            // do_mmap: MAP_LOCKED needs can_do_mlock, and any locked mapping must fit under the lock limit.
            if ((flags & MapFlags.Locked) != 0 && !_mm.CanLock)
            {
                return Errno.EPERM;
            }
            if (!_mm.MayLockMore(vmFlags, length))
            {
                return Errno.EAGAIN;
            }
            Errno placed = Place(address, length, flags, out ulong start);
            if (placed != Errno.None)
            {
                return placed;
            }
            ulong end = start + length;
            // do_mmap: refuse when the count is already past the limit; a MAP_FIXED that splits a VMA needs room too.
            if (_mm.Tree.Count > _mm.Settings.MaxMapCount || _unmapper.CountAfterUnmap(start, end) > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if (_unmapper.RefuseSealed(start, end))
            {
                // A sealed VMA cannot be replaced (only a split before it stays, as on Linux).
                return Errno.EPERM;
            }
            if (!_editor.EdgesMaySplit(start, end))
            {
                return Errno.EINVAL;
            }
            if (_mm.Tree.FindFirstEndingAbove(start) is { } overlap && overlap.Start < end)
            {
                // vms_gather_munmap_vmas with mmap's uf list: what MAP_FIXED replaces is reported as unmapped.
                UserFaultEvents.PrepareUnmap(_mm, start, end, ref unmapEvents);
                _unmapper.Unmap(start, end, downgrade: false);
            }
            if ((vmFlags & VmFlags.SpecialMask) != 0)
            {
                // __mmap_complete: a VM_SPECIAL VMA is never locked (mlockall's future flag included) nor counted.
                vmFlags &= ~VmFlags.LockedMask;
            }
            Vma created = _mm.CreateVma(start, end, pageOffset ?? start >> PageGeometry.PageShift, vmFlags, backing);
            _editor.InsertAndMerge(created);
            _mm.Tree.Publish();
            _editor.EndWriteSections();
            if ((vmFlags & VmFlags.Locked) != 0)
            {
                _mm.LockedPages += (long)(length >> PageGeometry.PageShift);
            }
            mapped = start;
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
            // vm_mmap_pgoff: userfaultfd_unmap_complete once the lock is dropped, before the populate.
            UserFaultEvents.Complete(unmapEvents);
        }
        // do_mmap's populate: a locked VMA, or MAP_POPULATE unless MAP_NONBLOCK.
        if ((vmFlags & VmFlags.Locked) != 0 || (flags & (MapFlags.Populate | MapFlags.NonBlock)) == MapFlags.Populate)
        {
            _populator.Populate(mapped, mapped + length, ignoreErrors: true);
        }
        return Errno.None;
    }

    // The argument checks of ksys_mmap_pgoff and do_mmap, in Linux's order; may align `length` and `address`.
    private Errno Validate(ref ulong address, ref ulong length, MapFlags flags)
    {
        int type = (int)flags & 0x0f;
        if ((flags & MapFlags.Anonymous) == 0)
        {
            // A file mapping needs a file: fd -1 is EBADF, checked before the type (as fget comes first).
            return type is 1 or 2 or 3 ? Errno.EBADF : Errno.EINVAL;
        }
        // Anonymous mappings accept only MAP_SHARED or MAP_PRIVATE; MAP_SHARED_VALIDATE is for files (verified on
        // the host: EINVAL even without unknown flags). Unknown flag bits are ignored, as Linux does.
        if (type is not (1 or 2))
        {
            return Errno.EINVAL;
        }
        return ValidateRange(ref address, ref length, flags);
    }

    // The checks every mmap makes of its range, in the order of ksys_mmap_pgoff, do_mmap and __get_unmapped_area:
    // huge pages, length, then a fixed address's bounds before its alignment, then mmap_min_addr.
    private Errno ValidateRange(ref ulong address, ref ulong length, MapFlags flags)
    {
        if (length == 0)
        {
            return Errno.EINVAL;
        }
        if ((flags & MapFlags.HugeTlb) != 0)
        {
            // Faultline has no huge pages, like a host with none reserved: a fixed address not aligned to the huge page
            // is EINVAL (hugetlb_get_unmapped_area), anything else fails the reservation with ENOMEM.
            bool isFixed = (flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0;
            return isFixed && (address & (PageGeometry.PmdSize - 1)) != 0 ? Errno.EINVAL : Errno.ENOMEM;
        }
        length = PageGeometry.PageAlign(length);
        if (length == 0 || length > PageGeometry.TaskSize)
        {
            return Errno.ENOMEM;
        }
        if ((flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) != 0)
        {
            if (address > PageGeometry.TaskSize - length)
            {
                return Errno.ENOMEM;
            }
            if ((address & PageGeometry.PageOffsetMask) != 0)
            {
                return Errno.EINVAL;
            }
            if (address < _mm.Settings.MmapMinAddress)
            {
                return Errno.EPERM;
            }
        }
        return Errno.None;
    }

    // do_mmap's placement: MAP_FIXED_NOREPLACE refuses an occupied range, MAP_FIXED takes the address as given, and
    // anything else asks get_unmapped_area.
    private Errno Place(ulong address, ulong length, MapFlags flags, out ulong start)
    {
        start = address;
        if ((flags & MapFlags.FixedNoReplace) != 0)
        {
            return _mm.Tree.FindFirstEndingAbove(address) is { } vma && vma.Start < address + length ? Errno.EEXIST : Errno.None;
        }
        if ((flags & MapFlags.Fixed) != 0)
        {
            return Errno.None;
        }
        bool below2GiB = (flags & MapFlags.Map32Bit) != 0;
        // __get_unmapped_area: a hint-less private anonymous mapping of whole PMDs is THP-aligned when it can be.
        ulong? found = _mm.Settings.ThpAlignedPlacement && address == 0 && (flags & MapFlags.Shared) == 0
            && (length & (PageGeometry.PmdSize - 1)) == 0
            ? _search.FindPmdAligned(length, below2GiB)
            : null;
        found ??= below2GiB ? _search.FindBelow2GiB(address, length) : _search.Find(address, length);
        if (found is null)
        {
            return Errno.ENOMEM;
        }
        start = found.Value;
        return Errno.None;
    }
}
