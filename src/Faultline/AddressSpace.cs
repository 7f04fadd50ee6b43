using Faultline.Areas;
using Faultline.VmStat;
using Faultline.Diagnostics;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline;

/// <summary>
/// A guest address space with Linux semantics (the kernel's <c>mm_struct</c> and its system calls): anonymous
/// mappings created with <see cref="Map"/>, removed with <see cref="Unmap"/>, re-protected with <see cref="Protect"/>,
/// demand-paged on first touch by the <see cref="Cpu"/>s attached to it through the configured
/// <see cref="Faultline.FaultPath"/>.
/// </summary>
/// <example>
/// <code>
/// using var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.VmaLock });
/// ulong heap = space.Map(0, 1 &lt;&lt; 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
/// using Cpu cpu = space.AttachCpu();
/// cpu.Store(heap + 8, 42L);                 // first touch: a page fault allocates a zeroed frame
/// long value = cpu.Load&lt;long&gt;(heap + 8);  // TLB hit
/// </code>
/// </example>
public sealed class AddressSpace : IDisposable
{
    private static long s_nextId;

    private readonly MemoryDescriptor _mm;
    private readonly MappingOperations _operations;
    private readonly FaultlineMetrics _metrics;
    private readonly object _populateGate = new();
    private bool _disposed;

    /// <summary>Creates an empty address space.</summary>
    public AddressSpace(FaultlineOptions? options = null)
    {
        Options = options ?? new FaultlineOptions();
        _mm = new MemoryDescriptor(SettingsFrom(Options));
        _operations = new MappingOperations(_mm);
        Id = Interlocked.Increment(ref s_nextId);
        _metrics = new FaultlineMetrics(_mm, Id);
    }

    /// <summary>Settings.</summary>
    public FaultlineOptions Options { get; }

    /// <summary>A process-unique number (the Metrics tag <c>address_space</c>).</summary>
    public long Id { get; }

    /// <summary>The fault path in use.</summary>
    public FaultPath FaultPath => Options.FaultPath;

    /// <summary><c>mm_users</c>: Cpus attached.</summary>
    public int CpuCount => _mm.Users;

    /// <summary><c>map_count</c>: VMAs.</summary>
    public int MapCount => _mm.Tree.Published?.Count ?? 0;

    /// <summary>Resident anonymous pages (<c>MM_ANONPAGES</c>, smaps Rss summed).</summary>
    public long ResidentPages => _mm.AnonPages;

    /// <summary>Frames of guest RAM in use: data, page tables, and Cpu frame caches.</summary>
    public int FramesInUse => _mm.Memory.FramesInUse;

    /// <summary>
    /// With <see cref="FaultlineOptions.PoisonFreedFrames"/>: freed frames found modified when reused (a write through
    /// a stale translation). Always 0 unless something is broken.
    /// </summary>
    public long PoisonViolations => _mm.Memory.PoisonViolations;

    /// <summary>Page-table pages in use.</summary>
    public int PageTablePages => _mm.PageTable.TablePages;

    internal MemoryDescriptor Descriptor => _mm;

    /// <summary>
    /// <c>mmap</c> of anonymous memory. <paramref name="address"/> is a hint unless <see cref="MapFlags.Fixed"/> or
    /// <see cref="MapFlags.FixedNoReplace"/> is given. Returns the start.
    /// </summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public ulong Map(ulong address, ulong length, Protection protection, MapFlags flags)
    {
        Errno error = TryMap(address, length, protection, flags, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error);
    }

    /// <summary><c>mmap</c>, returning the errno (<see cref="Errno.None"/> on success).</summary>
    public Errno TryMap(ulong address, ulong length, Protection protection, MapFlags flags, out ulong mapped)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Errno error = _operations.Map(address, length, protection, flags, out mapped);
        if (error == Errno.None && (flags & MapFlags.Populate) != 0)
        {
            Populate(mapped, PageGeometry.PageAlign(length), (protection & Protection.Write) != 0);
        }
        return error;
    }

    /// <summary><c>munmap</c>.</summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public void Unmap(ulong address, ulong length)
    {
        Errno error = TryUnmap(address, length);
        if (error != Errno.None)
        {
            throw new MemoryOperationException("munmap", error);
        }
    }

    /// <summary><c>munmap</c>, returning the errno.</summary>
    public Errno TryUnmap(ulong address, ulong length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _operations.Unmap(address, length);
    }

    /// <summary><c>mprotect</c>.</summary>
    /// <exception cref="MemoryOperationException">With Linux's errno.</exception>
    public void Protect(ulong address, ulong length, Protection protection)
    {
        Errno error = TryProtect(address, length, protection);
        if (error != Errno.None)
        {
            throw new MemoryOperationException("mprotect", error);
        }
    }

    /// <summary><c>mprotect</c>, returning the errno. Unlike Linux, a range with a hole changes nothing.</summary>
    public Errno TryProtect(ulong address, ulong length, Protection protection)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _operations.Protect(address, length, protection);
    }

    /// <summary>Attaches a new Cpu (<c>mm_users</c> rises).</summary>
    public Cpu AttachCpu()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return new Cpu(this, _mm);
    }

    /// <summary>The mappings, in address order.</summary>
    public IReadOnlyList<MappingInfo> GetMappings() =>
        VmaTree.InOrder(_mm.Tree.Published).Select(MapsFormatter.Describe).ToList();

    /// <summary>The text of <c>/proc/pid/maps</c>.</summary>
    public string GetMaps() => MapsFormatter.Maps(VmaTree.InOrder(_mm.Tree.Published));

    /// <summary>The text of <c>/proc/pid/smaps</c> (Size, Rss, Anonymous, Referenced and the other fields).</summary>
    public string GetSmaps()
    {
        _mm.MmapLock.EnterRead();
        try
        {
            return MapsFormatter.Smaps(VmaTree.InOrder(_mm.Tree.Published), vma =>
            {
                (long rss, long _, long referenced) = _mm.PageTable.CountResident(vma.Start, vma.End);
                return (rss, referenced, CountDirty(vma.Start, vma.End));
            });
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>
    /// True when a page table entry maps a frame at <paramref name="address"/> (the <c>/proc/pid/pagemap</c> present
    /// bit: the zero frame and PROT_NONE entries count).
    /// </summary>
    public bool IsResident(ulong address)
    {
        _mm.MmapLock.EnterRead();
        try
        {
            return address < PageGeometry.TaskSize && Pte.MapsFrame(_mm.PageTable.Lookup(address));
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>Resident refcounted pages in [start, end) (smaps Rss / 4 KiB).</summary>
    public long CountResidentPages(ulong start, ulong end)
    {
        _mm.MmapLock.EnterRead();
        try
        {
            return _mm.PageTable.CountResident(start, end).Rss;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary>Every counter by name (kernel names where they exist, e.g. <c>VMA_LOCK_SUCCESS</c>, <c>spf_vma_changed</c>).</summary>
    public IReadOnlyDictionary<string, long> GetCounters()
    {
        long[] totals = _mm.SnapshotCounters();
        var result = new Dictionary<string, long>();
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            result[EventNames.Of(e)] = totals[(int)e];
        }
        return result;
    }

    /// <summary>Releases guest memory. Cpus must be disposed first.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
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
        return new MmSettings((int)frames, options.PoisonFreedFrames, options.FaultPath, options.SpeculativePageTableAllocation,
            options.MaxMapCount, options.MmapMinAddress, options.MmapBase, options.MapZeroPageOnRead);
    }

    private long CountDirty(ulong start, ulong end)
    {
        long dirty = 0;
        for (ulong page = start; page < end; page += PageGeometry.PageSize)
        {
            ulong pte = _mm.PageTable.Lookup(page);
            if (Pte.MapsFrame(pte) && (pte & Pte.Special) == 0 && (pte & Pte.Dirty) != 0)
            {
                dirty++;
            }
        }
        return dirty;
    }

    // MAP_POPULATE (populate_vma_page_range): fault every page in, writing for private writable memory, from a
    // context of the address space's own that is not a user (it does not count in mm_users).
    private void Populate(ulong start, ulong length, bool write)
    {
        lock (_populateGate)
        {
            var context = new FaultCpu(_mm.Memory, _mm.Rcu);
            _mm.Rcu.Register(context.Reader);
            try
            {
                for (ulong page = start; page < start + length; page += PageGeometry.PageSize)
                {
                    if (FaultRouter.Fault(_mm, context, page, write ? AccessKind.Write : AccessKind.Read) != AccessOutcome.Ok)
                    {
                        break;
                    }
                }
            }
            finally
            {
                context.Frames.DrainAll();
                _mm.Rcu.Unregister(context.Reader);
                context.Counters.AddTo(_mm.SharedCounters);
            }
        }
    }
}
