namespace Faultline.Cli.Paths;

/// <summary>A Faultline <see cref="AddressSpace"/> on one of its fault paths.</summary>
internal sealed class FaultlineTarget : IMemoryTarget
{
    private readonly AddressSpace _space;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<int, MemoryFile> _files = new();

    /// <summary>Creates an address space with an arena of <paramref name="physicalBytes"/> and, if given, a swap area.</summary>
    public FaultlineTarget(PathKind path, long physicalBytes, SwapOptions? swap = null)
    {
        Path = path;
        _space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = PathNames.ToFaultPath(path),
            PhysicalMemoryBytes = physicalBytes,
            SpeculativePageTableAllocation = path != PathKind.SpeculativeNoTableAllocation,
            BackgroundZeroing = path == PathKind.SpeculativeBackgroundZeroing,
            FaultAroundBytes = path == PathKind.VmaLockNoFaultAround ? (int)PageGeometry.PageSize : new FaultlineOptions().FaultAroundBytes,
            Swap = path == PathKind.VmaLockNoSwapReadahead && swap is not null ? swap with { PageCluster = 0 } : swap,
            MemoryLimitBytes = path == PathKind.SpeculativeMemoryLimit ? physicalBytes : null,
        });
    }

    /// <inheritdoc />
    public PathKind Path { get; }

    /// <summary>The address space.</summary>
    public AddressSpace Space => _space;

    /// <inheritdoc />
    public ulong Map(ulong length, bool writable = true) =>
        _space.Map(0, length, writable ? Protection.ReadWrite : Protection.Read, MapFlags.PrivateAnonymous);

    /// <inheritdoc />
    public ulong MapHugePageAdvised(ulong length)
    {
        // Over-map by 2 MiB and trim both ends to an aligned start (what thp_get_unmapped_area gives on the kernel).
        ulong raw = _space.Map(0, length + PageGeometry.PmdSize, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        ulong aligned = (raw + PageGeometry.PmdSize - 1) & ~(PageGeometry.PmdSize - 1);
        if (aligned > raw)
        {
            _space.Unmap(raw, aligned - raw);
        }
        if (raw + PageGeometry.PmdSize > aligned)
        {
            _space.Unmap(aligned + length, raw + PageGeometry.PmdSize - aligned);
        }
        _space.Advise(aligned, length, Advice.HugePage);
        return aligned;
    }

    /// <inheritdoc />
    public void Unmap(ulong address, ulong length) => _space.Unmap(address, length);

    /// <inheritdoc />
    public void Protect(ulong address, ulong length, bool writable) =>
        _space.Protect(address, length, writable ? Protection.ReadWrite : Protection.Read);

    /// <inheritdoc />
    public ThreadMemory AttachThread() => new FaultlineThreadMemory(_space.AttachCpu());

    /// <inheritdoc />
    public IReadOnlyDictionary<string, long> SnapshotCounters() => _space.GetCounters();

    /// <inheritdoc />
    /// <remarks>The file is a <see cref="MemoryFile"/> (tmpfs) in the address space's guest RAM.</remarks>
    public ulong MapFile(int worker, ulong length, bool shared, bool writable)
    {
        MemoryFile file = _files.GetOrAdd(worker, static (w, size) =>
        {
            var created = new MemoryFile(size.Space, $"bench-{w}");
            created.Truncate((long)size.Length);
            return created;
        }, (Space: _space, Length: length));
        return _space.Map(0, length, writable ? Protection.ReadWrite : Protection.Read, shared ? MapFlags.Shared : MapFlags.Private, file, 0);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _space.Dispose();
        foreach (MemoryFile file in _files.Values)
        {
            file.Dispose();
        }
    }
}

/// <summary>A Faultline <see cref="Cpu"/>: every access goes through its software TLB and, on a miss, a fault path.</summary>
internal sealed class FaultlineThreadMemory(Cpu cpu) : ThreadMemory
{
    /// <summary>The Cpu.</summary>
    public Cpu Cpu { get; } = cpu;

    /// <inheritdoc />
    public override void StampPages(ulong address, long pages, long salt, int word = 0)
    {
        Cpu c = Cpu;
        ulong offset = (ulong)word * sizeof(long);
        ulong end = address + ((ulong)pages << 12);
        for (ulong page = address; page < end; page += 4096)
        {
            c.Store(page + offset, Stamp.Of(page, salt));
        }
    }

    /// <inheritdoc />
    public override long VerifyPages(ulong address, long pages, long salt, out ulong firstBad, int word = 0)
    {
        Cpu c = Cpu;
        long bad = 0;
        firstBad = 0;
        ulong offset = (ulong)word * sizeof(long);
        ulong end = address + ((ulong)pages << 12);
        for (ulong page = address; page < end; page += 4096)
        {
            if (c.Load<long>(page + offset) != Stamp.Of(page, salt))
            {
                if (bad++ == 0)
                {
                    firstBad = page;
                }
            }
        }
        return bad;
    }

    /// <inheritdoc />
    public override void StoreLong(ulong address, long value) => Cpu.Store(address, value);

    /// <inheritdoc />
    public override long LoadLong(ulong address) => Cpu.Load<long>(address);

    /// <inheritdoc />
    public override void Dispose() => Cpu.Dispose();
}
