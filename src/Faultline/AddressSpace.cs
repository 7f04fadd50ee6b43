using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Diagnostics;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.Syscalls;

namespace Faultline;

/// <summary>
/// A guest address space with Linux semantics (the kernel's <c>mm_struct</c> and its system calls): anonymous
/// mappings created with <see cref="Map(ulong, ulong, Protection, MapFlags)"/>, removed with <see cref="Unmap"/>, re-protected with <see cref="Protect"/>,
/// demand-paged on first touch by the <see cref="Cpu"/>s attached to it through the configured
/// <see cref="Faultline.FaultPath"/>.
/// </summary>
/// <remarks>
/// <para>
/// Thread safety: every member may be called from any thread, concurrently with the others and with accesses of
/// its Cpus (each Cpu itself is used by one thread at a time).
/// </para>
/// <para>
/// Disposal: <see cref="Dispose"/> detaches the attached Cpus and returns guest memory to the host. It may run while
/// Cpus are attached and even while they access memory on other threads: accesses and operations in flight finish
/// first, and from then on every Cpu access and every member except <see cref="Id"/>, <see cref="Options"/>,
/// <see cref="FaultPath"/> and <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>. Disposing the
/// Cpus afterwards is harmless. An address space that is never disposed releases its guest memory when the garbage
/// collector finds it and its Cpus unreachable.
/// </para>
/// </remarks>
/// <example>
/// <code>
/// using var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.VmaLock });
/// ulong heap = space.Map(0, 1 &lt;&lt; 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
/// using Cpu cpu = space.AttachCpu();
/// cpu.Store(heap + 8, 42L);                 // first touch: a page fault allocates a zeroed frame
/// long value = cpu.Load&lt;long&gt;(heap + 8);  // TLB hit
/// </code>
/// </example>
public sealed partial class AddressSpace : IDisposable
{
    private static long s_nextId;

    private readonly MemoryDescriptor _mm;
    private readonly MmapSyscall _mmap;
    private readonly MunmapSyscall _munmap;
    private readonly MprotectSyscall _mprotect;
    private readonly MremapSyscall _mremap;
    private readonly ForkSyscall _fork;
    private readonly VmaEditor _editor;
    private readonly MadviseSyscall _madvise;
    private readonly BrkSyscall _brk;
    private readonly MincoreSyscall _mincore;
    private readonly MsyncSyscall _msync;
    private readonly MsealSyscall _mseal;
    private readonly MlockSyscall _mlock;
    private readonly HostMemoryMapSyscall _hostMap;
    private readonly PinSyscall _pin;
    private readonly FaultlineMetrics _metrics;

    /// <summary>Creates an empty address space.</summary>
    public AddressSpace(FaultlineOptions? options = null)
        : this(options ?? new FaultlineOptions(), sharedMemory: null)
    {
    }

    /// <summary>
    /// Creates an empty address space, over guest RAM that another address space uses too when
    /// <paramref name="sharedMemory"/> is given (a forked child; <paramref name="options"/>' memory size is then ignored).
    /// </summary>
    internal AddressSpace(FaultlineOptions options, PhysicalMemory? sharedMemory, MemoryGroup? group = null)
    {
        Options = options;
        if (options.MemoryLimitBytes < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "MemoryLimitBytes must not be negative");
        }
        _mm = sharedMemory is null ? new MemoryDescriptor(SettingsFrom(Options)) : new MemoryDescriptor(SettingsFrom(Options), sharedMemory);
        _mm.Owner = this;
        // The group is known before anything can fault: a new RAM's from the options, a child's from its parent.
        MemoryGroup = sharedMemory is null && options.MemoryLimitBytes is { } limit
            ? MemoryGroup.CreateOver(_mm.Memory, limit, "mkdir")
            : group;
        _mm.Group = MemoryGroup?.Charge;
        // One editor per address space: the system calls use it only under the mmap write lock.
        _editor = new VmaEditor(_mm);
        var unmapper = new RegionUnmapper(_mm, _editor);
        var populator = new PagePopulator(_mm, this);
        _mmap = new MmapSyscall(_mm, _editor, unmapper, populator, this);
        _munmap = new MunmapSyscall(_mm, _editor, unmapper, this);
        _mprotect = new MprotectSyscall(_mm, _editor, populator, this);
        _mremap = new MremapSyscall(_mm, _editor, unmapper, populator, this);
        _madvise = new MadviseSyscall(_mm, _editor, populator, this);
        _brk = new BrkSyscall(_mm, _editor, unmapper, populator, this);
        _mincore = new MincoreSyscall(_mm, this);
        _msync = new MsyncSyscall(_mm, this);
        _mseal = new MsealSyscall(_mm, _editor, this);
        _mlock = new MlockSyscall(_mm, _editor, populator, this);
        _hostMap = new HostMemoryMapSyscall(_mmap);
        _pin = new PinSyscall(_mm, populator, this);
        _fork = new ForkSyscall(_mm, _editor, this);
        Id = Interlocked.Increment(ref s_nextId);
        _metrics = new FaultlineMetrics(_mm, Id);
        StartHugePageCollapse();
    }

    /// <summary>Settings.</summary>
    public FaultlineOptions Options { get; }

    /// <summary>
    /// The memory group this address space is charged to: made from <see cref="FaultlineOptions.MemoryLimitBytes"/>
    /// for a new address space, the parent's (or the one given to <see cref="Fork(Faultline.MemoryGroup)"/>) for a
    /// forked child; null when it has none (no limit, no accounting). Readable after <see cref="Dispose"/>: the group
    /// outlives its members, as a cgroup outlives its tasks.
    /// </summary>
    public MemoryGroup? MemoryGroup { get; }

    /// <summary>The guest RAM, for a group made over it.</summary>
    internal PhysicalMemory GuestMemory => Live.Memory;

    /// <summary>A process-unique number (the Metrics tag <see cref="FaultlineMeter.AddressSpaceTag"/>).</summary>
    public long Id { get; }

    /// <summary>The fault path in use.</summary>
    public FaultPath FaultPath => Options.FaultPath;

    /// <summary><c>mm_users</c>: Cpus attached.</summary>
    public int CpuCount => Live.Users;

    /// <summary><c>map_count</c>: VMAs.</summary>
    public int MapCount => Live.Tree.PublishedCount;

    /// <summary>
    /// Resident pages this address space maps: anonymous ones (<c>MM_ANONPAGES</c>) plus shared-memory ones
    /// (<c>MM_SHMEMPAGES</c>), the kernel's <c>get_mm_rss</c> (smaps Rss summed over private anonymous and shared
    /// anonymous mappings). A shared-memory page mapped by a parent and its forked child counts in both, as in each
    /// process's RSS on Linux; one cached but not mapped here (after MADV_DONTNEED) does not count.
    /// </summary>
    public long ResidentPages
    {
        get
        {
            long[] counters = Live.SnapshotCounters();
            return counters[(int)VmEvent.AnonPages] + counters[(int)VmEvent.ShmemPages];
        }
    }

    /// <summary>Frames of guest RAM in use: data, page tables, and Cpu frame caches.</summary>
    public int FramesInUse => Live.Memory.FramesInUse;

    /// <summary>
    /// With <see cref="FaultlineOptions.PoisonFreedFrames"/>: freed frames found modified when reused (a write through
    /// a stale translation). Always 0 unless something is broken.
    /// </summary>
    public long PoisonViolations => Live.Memory.PoisonViolations;

    /// <summary>Page-table pages in use.</summary>
    public int PageTablePages => Live.PageTable.TablePages;

    internal MemoryDescriptor Descriptor => _mm;

    /// <summary>The VMA editor the system calls share (used only under the mmap write lock).</summary>
    internal VmaEditor Editor => _editor;

    // The descriptor, or ObjectDisposedException once disposal began. What these callers read is managed state that
    // stays valid after the arena is released, so the acquire read of the mark (MemoryDescriptor.IsExiting) is enough.
    private MemoryDescriptor Live
    {
        get
        {
            ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
            return _mm;
        }
    }

    /// <summary>
    /// <c>mmap</c> of anonymous memory. <paramref name="address"/> is a hint unless <see cref="MapFlags.Fixed"/> or
    /// <see cref="MapFlags.FixedNoReplace"/> is given. Returns the start.
    /// </summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public ulong Map(ulong address, ulong length, Protection protection, MapFlags flags)
    {
        Errno error = TryMap(address, length, protection, flags, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error, address, length, protection, flags);
    }

    /// <summary><c>mmap</c>, returning the errno (<see cref="Errno.None"/> on success).</summary>
    public Errno TryMap(ulong address, ulong length, Protection protection, MapFlags flags, out ulong mapped)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mmap.Map(address, length, protection, flags, out mapped);
    }

    /// <summary>
    /// <c>mmap</c> of a backing (a file mapping's shape: <see cref="MapFlags.Private"/> or <see cref="MapFlags.Shared"/>,
    /// starting at page <paramref name="pageOffset"/> of it). Returns the start.
    /// </summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    internal ulong MapBacking(ulong address, ulong length, Protection protection, MapFlags flags, IBacking backing, ulong pageOffset)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        Errno error = _mmap.MapBacking(address, length, protection, flags, backing, pageOffset, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error, address, length, protection, flags);
    }

    /// <summary>
    /// <c>mmap</c> of a memory-mapped I/O region: every load and store a <see cref="Cpu"/> makes in
    /// [start, start + <paramref name="length"/>) calls <paramref name="device"/> at offset
    /// <paramref name="deviceOffset"/> + (address − start), from the accessing Cpu's thread. No frame backs the region and
    /// the software TLB never holds a translation of it; protections are checked as for memory (PROT_NONE or read-only
    /// refuse with SIGSEGV). The VMA is <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c>, named
    /// <paramref name="name"/> in the maps: mremap cannot grow it (EFAULT), <c>MADV_DONTNEED</c>/<c>MADV_FREE</c> on it
    /// is EINVAL, mlock leaves it unlocked without an error, fork gives the child the same device, mprotect and partial
    /// munmap work as for memory, and atomic read-modify-writes on it end in SIGBUS. <paramref name="flags"/> must be
    /// <see cref="MapFlags.Shared"/> (plus placement flags such as <see cref="MapFlags.Fixed"/>). Returns the start.
    /// </summary>
    /// <remarks>See <see cref="IMmioDevice"/> for when and how the device is called.</remarks>
    /// <exception cref="MemoryOperationException">With Linux's errno: EINVAL for a private mapping or a device offset
    /// that is not page-aligned, else as <see cref="Map(ulong, ulong, Protection, MapFlags)"/>.</exception>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> or <paramref name="name"/> is null.</exception>
    public ulong MapDevice(ulong address, ulong length, Protection protection, MapFlags flags, IMmioDevice device, string name,
        ulong deviceOffset = 0)
    {
        Errno error = TryMapDevice(address, length, protection, flags, device, name, deviceOffset, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error, address, length, protection, flags);
    }

    /// <summary><see cref="MapDevice"/>, returning the errno (<see cref="Errno.None"/> on success).</summary>
    /// <exception cref="ArgumentNullException"><paramref name="device"/> or <paramref name="name"/> is null.</exception>
    public Errno TryMapDevice(ulong address, ulong length, Protection protection, MapFlags flags, IMmioDevice device, string name,
        ulong deviceOffset, out ulong mapped)
    {
        ArgumentNullException.ThrowIfNull(device);
        ArgumentNullException.ThrowIfNull(name);
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        mapped = 0;
        // The mmap system call's offset check (in bytes, before it becomes a page offset).
        if ((deviceOffset & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        return _mmap.MapDevice(address, length, protection, flags, new DeviceBacking(device, name), deviceOffset >> PageGeometry.PageShift,
            out mapped);
    }

    /// <summary>
    /// <c>fork</c> for memory: a child address space over the same guest RAM with a copy of every mapping, private
    /// pages shared copy-on-write (the first write of either side to a shared page copies it; an exclusive page is
    /// reused). Mappings advised <c>MADV_DONTFORK</c> are left out, <c>MADV_WIPEONFORK</c> ones start zero-filled in the
    /// child, and locked-memory flags do not pass to it. The child has the same options and no Cpus.
    /// </summary>
    /// <remarks>
    /// Safe while this address space's Cpus run on other threads: their faults wait for the copy, and before this
    /// returns none of them can still write through a translation the copy made read-only, so every later store of
    /// the parent stays the parent's. A store racing the call may land before the copy (both sides see it) or after
    /// (only the parent does), as with a thread racing <c>fork()</c> on Linux. Parent and child are independent
    /// afterwards: either may be disposed first; guest RAM goes back to the host with the last of them.
    /// </remarks>
    /// <exception cref="MemoryOperationException"><see cref="Errno.ENOMEM"/> when guest RAM ran out for the child's page tables.</exception>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public AddressSpace Fork() => Fork(MemoryGroup, attempt: 0);

    /// <summary>
    /// <see cref="Fork()"/> with the child charged to <paramref name="group"/> instead of this address space's group
    /// (a task forked and moved into another cgroup before it touches memory). Pages the child shares with this address
    /// space stay charged to whoever paid for them; what the child allocates from then on is charged to
    /// <paramref name="group"/>, which must account for the same guest RAM (<see cref="MemoryGroup.Create"/>).
    /// </summary>
    /// <exception cref="MemoryOperationException"><see cref="Errno.EINVAL"/> when <paramref name="group"/> accounts
    /// for other guest RAM; <see cref="Errno.ENOMEM"/> as <see cref="Fork()"/>.</exception>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public AddressSpace Fork(MemoryGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        if (!group.Accounts(Live.Memory))
        {
            throw new MemoryOperationException("fork", Errno.EINVAL);
        }
        return Fork(group, attempt: 0);
    }

    private AddressSpace Fork(MemoryGroup? group, int attempt)
    {
        AddressSpace child;
        try
        {
            child = new AddressSpace(Options, Live.Memory, group);
        }
        catch (OutOfMemoryException)
        {
            // Reclaim runs once the failed child is gone (not in an exception filter, before its cleanup).
            if (ReclaimForRetry(attempt))
            {
                return Fork(group, attempt + 1);
            }
            throw new MemoryOperationException("fork", Errno.ENOMEM);
        }
        try
        {
            Errno error = _fork.Fork(child._mm, child._editor);
            if (error == Errno.ENOMEM && ReclaimForRetry(attempt))
            {
                child.Dispose();
                return Fork(group, attempt + 1);
            }
            if (error != Errno.None)
            {
                throw new MemoryOperationException("fork", error);
            }
            return child;
        }
        catch
        {
            child.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The reverse map of the page mapped at <paramref name="address"/> (<c>rmap_walk</c>): every address space, this
    /// one and its forked relatives, and the address where each maps the same frame. Empty when no refcounted
    /// anonymous page is mapped there (unmapped, never touched, the zero page).
    /// </summary>
    public IReadOnlyList<PageMapping> GetPageMappings(ulong address)
    {
        MemoryDescriptor mm = Live;
        mm.EnterReadUnlessExiting(this);
        long pfn;
        try
        {
            // The lookup stays inside a VMA of the published tree, whose tables the read lock keeps.
            pfn = VmaTree.Containing(mm.Tree.Published, address) is null ? -1 : mm.PageTable.GetMappedFrame(address);
        }
        finally
        {
            mm.MmapLock.ExitRead();
        }
        if (pfn < 0)
        {
            return [];
        }
        try
        {
            return ReverseMap.Find(mm.Memory, pfn)
                .Select(found => new PageMapping((AddressSpace)found.Mm.Owner, found.Address))
                .OrderBy(m => m.Space.Id).ThenBy(m => m.Address)
                .ToList();
        }
        finally
        {
            // The walk's reference maps nothing, so it may be the last one and free the frame (put_page).
            mm.Memory.Put(pfn);
        }
    }

    /// <summary><c>munmap</c>.</summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public void Unmap(ulong address, ulong length)
    {
        Errno error = TryUnmap(address, length);
        if (error != Errno.None)
        {
            throw new MemoryOperationException("munmap", error, address, length);
        }
    }

    /// <summary><c>munmap</c>, returning the errno.</summary>
    public Errno TryUnmap(ulong address, ulong length)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _munmap.Unmap(address, length);
    }

    /// <summary><c>mprotect</c>.</summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public void Protect(ulong address, ulong length, Protection protection)
    {
        Errno error = TryProtect(address, length, protection);
        if (error != Errno.None)
        {
            throw new MemoryOperationException("mprotect", error, address, length, protection);
        }
    }

    /// <summary>
    /// <c>mprotect</c>, returning the errno. As on Linux, a range with a hole (or a sealed VMA) fails with ENOMEM (EPERM)
    /// after changing the VMAs before it.
    /// </summary>
    public Errno TryProtect(ulong address, ulong length, Protection protection)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mprotect.Protect(address, length, protection);
    }

    /// <summary>
    /// <c>mremap</c>: resizes the mapping at <paramref name="oldAddress"/> from <paramref name="oldLength"/> to
    /// <paramref name="newLength"/> bytes, moving it when <paramref name="flags"/> allow or demand it, and returns its
    /// start afterwards. A move carries the pages (their page-table entries move; nothing is copied), so contents,
    /// residency and copy-on-write sharing with a forked relative are kept. With <see cref="RemapFlags.Fixed"/> the
    /// mapping goes to <paramref name="newAddress"/>, replacing what is there; with <see cref="RemapFlags.DontUnmap"/>
    /// the old range stays mapped and reads zeros afterwards. A locked mapping that grows is populated.
    /// </summary>
    /// <remarks>
    /// Thread-safe like every member: faults of other threads on the old or the new range wait for the move (or retry
    /// after it) and then see the mapping only at its new place. As on Linux, a shrink or a MREMAP_FIXED move that
    /// fails after unmapping something keeps that effect, and a move of several mappings keeps those moved before the
    /// one that failed.
    /// </remarks>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public ulong Remap(ulong oldAddress, ulong oldLength, ulong newLength, RemapFlags flags = RemapFlags.None, ulong newAddress = 0)
    {
        Errno error = TryRemap(oldAddress, oldLength, newLength, flags, newAddress, out ulong remapped);
        return error == Errno.None
            ? remapped
            : throw new MemoryOperationException("mremap", error, SyscallText.RemapCall(oldAddress, oldLength, newLength, flags, newAddress),
                oldAddress, oldLength);
    }

    /// <summary><c>mremap</c>, returning the errno (<see cref="Errno.None"/> on success) and the mapping's start in <paramref name="remapped"/>.</summary>
    public Errno TryRemap(ulong oldAddress, ulong oldLength, ulong newLength, RemapFlags flags, ulong newAddress, out ulong remapped)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mremap.Remap(oldAddress, oldLength, newLength, flags, newAddress, out remapped);
    }

    /// <summary><c>madvise</c>.</summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public void Advise(ulong address, ulong length, Advice advice)
    {
        Errno error = TryAdvise(address, length, advice);
        if (error != Errno.None)
        {
            throw new MemoryOperationException("madvise", error);
        }
    }

    /// <summary>
    /// <c>madvise</c>, returning the errno. As on Linux, holes in the range are skipped and reported as ENOMEM at the
    /// end, and an error at one VMA leaves the advice applied to the VMAs before it.
    /// </summary>
    public Errno TryAdvise(ulong address, ulong length, Advice advice)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _madvise.Advise(address, length, advice);
    }

    /// <summary>
    /// <c>brk</c>: moves the program break to <paramref name="newBreak"/> and returns it; on failure (below the heap's
    /// start, over another mapping or within a page of it, over the lock limit) returns the old break, as the system
    /// call does. <c>Brk(0)</c> returns the current break. The heap starts at <see cref="FaultlineOptions.BrkStart"/>.
    /// </summary>
    public ulong Brk(ulong newBreak)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _brk.Brk(newBreak);
    }

    /// <summary>
    /// <c>mincore</c>: one byte per page of [address, address + length) into <paramref name="residency"/>, 1 where a
    /// page table entry maps a frame. EINVAL unaligned, ENOMEM over a hole or past the user address space, EFAULT when
    /// <paramref name="residency"/> is shorter than the pages asked for.
    /// </summary>
    public Errno Mincore(ulong address, ulong length, Span<byte> residency)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mincore.Mincore(address, length, residency);
    }

    /// <summary>
    /// <c>msync</c>: with <see cref="SyncFlags.Sync"/> the dirty pages of the shared file mappings in the range are
    /// written back (each mapping of them cleaned first, so later stores dirty them again) and the file flushed (EIO on
    /// a host failure); anonymous memory and private mappings have nothing to write back, and
    /// <see cref="SyncFlags.Async"/> and <see cref="SyncFlags.Invalidate"/> only check, as on Linux. Linux's checks:
    /// EINVAL for bad flags or alignment, ENOMEM over a hole, EBUSY for <see cref="SyncFlags.Invalidate"/> of locked memory.
    /// </summary>
    public Errno Msync(ulong address, ulong length, SyncFlags flags)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _msync.Msync(address, length, flags);
    }

    /// <summary>
    /// <c>mseal</c> (Linux 6.10): seals the VMAs of a fully mapped range; afterwards munmap, mprotect, a MAP_FIXED
    /// mmap over them and discarding madvise of read-only anonymous memory fail with EPERM. <paramref name="flags"/>
    /// must be 0.
    /// </summary>
    public Errno Seal(ulong address, ulong length, ulong flags = 0)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mseal.Seal(address, length, flags);
    }

    /// <summary>
    /// <c>mlock</c> / <c>mlock2</c>: locks the pages of [address, address + length) (the range is widened to whole
    /// pages) and faults them in, or with <see cref="MemoryLockFlags.OnFault"/> leaves them to be locked as they are
    /// touched. As on Linux, a hole fails with ENOMEM after locking the VMAs before it.
    /// </summary>
    public Errno Lock(ulong address, ulong length, MemoryLockFlags flags = MemoryLockFlags.None)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mlock.Lock(address, length, flags);
    }

    /// <summary><c>munlock</c>: unlocks the pages of [address, address + length).</summary>
    public Errno Unlock(ulong address, ulong length)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mlock.Unlock(address, length);
    }

    /// <summary><c>mlockall</c>: locks every mapping (<see cref="LockAllFlags.Current"/>) and/or every future one.</summary>
    public Errno LockAll(LockAllFlags flags)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mlock.LockAll(flags);
    }

    /// <summary><c>munlockall</c>: unlocks every mapping and ends <see cref="LockAllFlags.Future"/>.</summary>
    public Errno UnlockAll()
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mlock.UnlockAll();
    }

    /// <summary>
    /// Maps host memory into the guest, as a device driver's <c>mmap</c> maps a framebuffer or device memory with
    /// <c>remap_pfn_range</c> (a <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c> VMA): guest loads and stores
    /// through the TLB reach <paramref name="hostMemory"/> itself, at the speed of guest RAM once translated.
    /// <paramref name="flags"/> must be <see cref="MapFlags.Shared"/> (or <see cref="MapFlags.SharedValidate"/>) plus
    /// placement flags, as for <see cref="Map(ulong, ulong, Protection, MapFlags)"/>; the mapping covers <paramref name="length"/> rounded up to whole pages.
    /// Returns the start.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Lifetime: the host memory stays the caller's, and Faultline neither copies, counts nor frees it. It must stay
    /// valid (page-aligned, readable and writable as mapped, at least the rounded-up length) until every mapping of it
    /// is gone: each address space that maps it (forked children inherit the mapping) has unmapped it or replaced it
    /// (<see cref="Unmap"/>, a <see cref="MapFlags.Fixed"/> map over it, a move by <see cref="Remap"/>) or been disposed.
    /// When one of those calls returns, no Cpu of that address space can reach the host memory any more: the page-table
    /// entries were cleared under their locks, the TLB generation bumped, and the grace period waited for every Cpu
    /// access that might have translated through them (the TLB shootdown).
    /// </para>
    /// <para>
    /// Semantics (Linux's for such a VMA): no refcount, no copy-on-write, no swap. A fork's child maps the same host
    /// memory; <see cref="Remap"/> may move or shrink the mapping but not grow it (EFAULT); <see cref="Advise"/> with
    /// <see cref="Advice.DontNeed"/>, <see cref="Advice.Free"/>, <see cref="Advice.Cold"/> or <see cref="Advice.PageOut"/>
    /// is EINVAL; <see cref="Lock"/> skips it; <see cref="Protect"/> and partial unmaps work as anywhere; it never merges
    /// with a neighbour. <see cref="Pin"/> refuses it (EFAULT), as <c>pin_user_pages</c> refuses <c>VM_PFNMAP</c>.
    /// </para>
    /// </remarks>
    /// <exception cref="MemoryOperationException">EINVAL for <see cref="MapFlags.Private"/> or <see cref="MapFlags.Anonymous"/>
    /// (a copy-on-write view of host memory is not supported), a null or unaligned <paramref name="hostMemory"/> or one
    /// above 2^51; otherwise mmap's errno.</exception>
    public ulong MapHostMemory(ulong address, ulong length, Protection protection, MapFlags flags, nint hostMemory)
    {
        Errno error = TryMapHostMemory(address, length, protection, flags, hostMemory, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error, address, length, protection, flags);
    }

    /// <summary><see cref="MapHostMemory"/>, returning the errno (<see cref="Errno.None"/> on success).</summary>
    public Errno TryMapHostMemory(ulong address, ulong length, Protection protection, MapFlags flags, nint hostMemory, out ulong mapped)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _hostMap.Map(address, length, protection, flags, hostMemory, out mapped);
    }

    /// <summary>
    /// <c>pin_user_pages</c> (<c>FOLL_PIN</c>, with <c>FOLL_WRITE</c> when <paramref name="write"/>): faults in the pages
    /// covering [address, address + length) — a write pin breaks copy-on-write first — and pins each frame, so the host
    /// can read (or write) guest memory as a device does by DMA until the returned handle is disposed. All or nothing.
    /// </summary>
    /// <remarks>
    /// An unmap or <see cref="Advice.DontNeed"/> of a pinned page succeeds and drops the mapping; the frame and its
    /// contents stay with the handle. A fork copies pinned private anonymous pages for the child at once, so the parent
    /// keeps the pinned frame mapped (the kernel's <c>copy_present_page</c>). A read pin of a page shared
    /// copy-on-write with a forked relative unshares it first, as Linux (since 5.19) does: this mapping gets an
    /// exclusive read-only copy, so the pin sees its later writes.
    /// </remarks>
    /// <exception cref="MemoryOperationException">EINVAL for a zero length; EFAULT for a page outside every mapping, in
    /// host memory, without the access (PROT_NONE, or read-only for a write pin) or whose fault fails; ENOMEM when
    /// guest RAM runs out.</exception>
    public PinnedPages Pin(ulong address, ulong length, bool write)
    {
        Errno error = TryPin(address, length, write, out PinnedPages? pinned);
        return error == Errno.None ? pinned! : throw new MemoryOperationException("pin_user_pages", error, address, length);
    }

    /// <summary><see cref="Pin"/>, returning the errno; <paramref name="pinned"/> is null unless it succeeded.</summary>
    public Errno TryPin(ulong address, ulong length, bool write, out PinnedPages? pinned)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _pin.Pin(address, length, write, out pinned);
    }

    /// <summary><c>mm->locked_vm</c>: pages in locked mappings (<c>VmLck</c> of <c>/proc/pid/status</c>).</summary>
    public long LockedPages => Live.LockedPages;

    /// <summary>Attaches a new Cpu (<c>mm_users</c> rises).</summary>
    public Cpu AttachCpu()
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return new Cpu(this, _mm);
    }

    /// <summary>The mappings, in address order.</summary>
    public IReadOnlyList<MappingInfo> GetMappings()
    {
        // The mmap read lock, as show_map takes it: the walk reads nodes and VMAs a writer would otherwise be free to
        // reuse once it retired them.
        _mm.EnterReadUnlessExiting(this);
        try
        {
            return VmaTree.InOrder(_mm.Tree.Published).Select(vma => MapsFormatter.Describe(vma, _mm.StartBrk, _mm.Brk)).ToList();
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>The text of <c>/proc/pid/maps</c>.</summary>
    public string GetMaps()
    {
        // As in GetMappings.
        _mm.EnterReadUnlessExiting(this);
        try
        {
            return MapsFormatter.Maps(VmaTree.InOrder(_mm.Tree.Published), _mm.StartBrk, _mm.Brk);
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>
    /// The text of <c>/proc/pid/smaps</c> (Size, Rss, Anonymous, Referenced and the other fields). Like the kernel's
    /// walk it visits only the page tables under VMAs of the published tree, holding the mmap read lock.
    /// </summary>
    public string GetSmaps()
    {
        _mm.EnterReadUnlessExiting(this);
        try
        {
            // Each walk stays inside its VMA: tables there cannot be freed while the read lock is held.
            return MapsFormatter.Smaps(VmaTree.InOrder(_mm.Tree.Published), _mm.StartBrk, _mm.Brk, vma => _mm.PageTable.CountResident(vma.Start, vma.End),
                _mm.Settings.TransparentHugePages);
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>
    /// True when a page table entry maps a frame at <paramref name="address"/> (the <c>/proc/pid/pagemap</c> present
    /// bit: the zero frame and PROT_NONE entries count). An address outside every mapping is not resident, as pagemap
    /// reports: only tables under a VMA of the published tree are walked.
    /// </summary>
    public bool IsResident(ulong address)
    {
        _mm.EnterReadUnlessExiting(this);
        try
        {
            // pagemap walks VMAs only: munmap takes the VMA out of the tree before it zaps and frees tables (then
            // downgrades to a read lock, so it may still be freeing them now), so tables under a VMA found here stay.
            return VmaTree.Containing(_mm.Tree.Published, address) is not null
                && Pte.MapsFrame(_mm.PageTable.Lookup(address, _mm.Probes));
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>
    /// Resident refcounted pages in [start, end) (smaps Rss / 4 KiB). Only the parts of the range covered by mappings
    /// are walked (see <see cref="IsResident"/>); the rest holds no resident page.
    /// </summary>
    public long CountResidentPages(ulong start, ulong end)
    {
        _mm.EnterReadUnlessExiting(this);
        try
        {
            long rss = 0;
            // Under the read lock no writer is between edits: the writer's version is the published one.
            foreach (Vma vma in _mm.Tree.Intersecting(start, end))
            {
                rss += _mm.PageTable.CountResident(Math.Max(start, vma.Start), Math.Min(end, vma.End)).Rss;
            }
            return rss;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>
    /// Every counter by name: the names and meanings of <see cref="VmCounters.All"/> (<c>/proc/vmstat</c> spelling where
    /// the kernel has the counter, e.g. <c>pgfault</c>, <c>vma_lock_success</c>; use the <see cref="VmCounters"/>
    /// constants as keys). A snapshot: the counts of Cpus running on other threads may lag by their latest events.
    /// </summary>
    public IReadOnlyDictionary<string, long> GetCounters()
    {
        long[] totals = Live.SnapshotCounters();
        var result = new Dictionary<string, long>();
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            result[EventNames.Of(e)] = totals[(int)e];
        }
        return result;
    }

    /// <summary>
    /// Detaches every Cpu and returns guest memory to the host (<c>exit_mmap</c>). Safe with Cpus attached and in use
    /// on other threads: what is in flight finishes first, and every later Cpu access or member call throws
    /// <see cref="ObjectDisposedException"/>. A second call does nothing.
    /// </summary>
    public void Dispose()
    {
        StopHugePageCollapse();
        _metrics.Dispose();
        _mm.Dispose();
    }

    // Validates the options and turns them into the plain values the inner layers use.
    internal static MmSettings SettingsFrom(FaultlineOptions options)
    {
        long frames = options.PhysicalMemoryBytes / PageGeometry.PageSize;
        if (frames is < 16 or > int.MaxValue)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "PhysicalMemoryBytes must hold 16 to 2^31 frames");
        }
        if (options.TlbEntries <= 0 || (options.TlbEntries & (options.TlbEntries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "TlbEntries must be a power of two");
        }
        if (options.HugeTlbEntries < 0 || (options.HugeTlbEntries & (options.HugeTlbEntries - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "HugeTlbEntries must be 0 or a power of two");
        }
        if ((options.BrkStart & PageGeometry.PageOffsetMask) != 0 || options.BrkStart >= PageGeometry.TaskSize)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "BrkStart must be page-aligned and below TASK_SIZE");
        }
        if (options.FaultAroundBytes < PageGeometry.PageSize || options.FaultAroundBytes > (int)PageGeometry.PmdSize
            || (options.FaultAroundBytes & (options.FaultAroundBytes - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "FaultAroundBytes must be a power of two from 4 KiB to 2 MiB");
        }
        if (!Enum.IsDefined(options.TransparentHugePages))
        {
            throw new ArgumentOutOfRangeException(nameof(options), "TransparentHugePages must be Always, Madvise or Never");
        }
        return new MmSettings((int)frames, options.PoisonFreedFrames, options.FaultPath, options.SpeculativePageTableAllocation,
            options.MaxMapCount, options.MmapMinAddress, options.MmapBase, options.MapZeroPageOnRead, options.MemoryLockLimit,
            options.CapIpcLock, options.BrkStart, options.BackgroundZeroing, options.StackLimit,
            options.FaultAroundBytes >> PageGeometry.PageShift, options.ThpAlignedPlacement, options.SoftDirty,
            options.TransparentHugePages, SwapOptions.ToSettings(options.Swap, (int)frames));
    }
}
