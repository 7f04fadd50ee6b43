namespace Faultline.Cli.Replay;

/// <summary>
/// One address space of a replay (one process image, or a forked copy of one): the <see cref="AddressSpace"/>, the
/// Cpus of the threads that fault in it, and the last few calls made in it (the context of a difference).
/// </summary>
/// <remarks>
/// Thread-safety: the address space is; <see cref="Remember"/> and <see cref="CpuFor"/> are called only by the thread
/// whose turn it is (the replay runs one event at a time), so they need no lock of their own. Disposal disposes the
/// Cpus and the address space.
/// </remarks>
internal sealed class ReplaySpace : IDisposable
{
    /// <summary>Calls kept as the context of a difference.</summary>
    public const int ContextCalls = 4;

    private readonly Queue<string> _recent = new();
    private readonly Dictionary<int, Cpu> _cpus = [];

    /// <summary>Wraps <paramref name="space"/>.</summary>
    public ReplaySpace(AddressSpace space) => Space = space;

    /// <summary>The address space.</summary>
    public AddressSpace Space { get; }

    /// <summary>The last <see cref="ContextCalls"/> calls, oldest first.</summary>
    public IReadOnlyList<string> Recent => _recent.ToList();

    /// <summary>
    /// A fresh address space laid out as the kernel laid out <paramref name="layout"/>'s program at exec: its mmap base,
    /// heap start and limits, and every initial mapping (executable, ld.so, [vvar], [vdso], [stack]) as anonymous
    /// memory at the same place with the same protection, the stack growing down.
    /// </summary>
    public static ReplaySpace Create(ProcessLayout layout, FaultPath path, long physicalBytes)
    {
        var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = physicalBytes,
            MmapBase = layout.MmapBase,
            BrkStart = layout.StartBrk,
            MmapMinAddress = layout.MmapMinAddress,
            StackLimit = layout.StackLimit,
            MemoryLockLimit = layout.MemoryLockLimit,
            CapIpcLock = layout.CapIpcLock,
            MaxMapCount = layout.MaxMapCount,
            ThpAlignedPlacement = layout.ThpAlignedPlacement,
        });
        try
        {
            foreach (InitialMapping m in layout.Mappings.Where(m => m.End <= PageGeometry.TaskSize))
            {
                MapFlags flags = (m.Shared ? MapFlags.Shared : MapFlags.Private) | MapFlags.Anonymous | MapFlags.Fixed
                    | (m.IsStack ? MapFlags.GrowsDown : MapFlags.None);
                space.Map(m.Start, m.End - m.Start, m.Protection, flags);
            }
        }
        catch
        {
            space.Dispose();
            throw;
        }
        return new ReplaySpace(space);
    }

    /// <summary>Adds a call to the context.</summary>
    public void Remember(string call)
    {
        _recent.Enqueue(call);
        if (_recent.Count > ContextCalls)
        {
            _recent.Dequeue();
        }
    }

    /// <summary>The Cpu of recorded thread <paramref name="tid"/>, attached on first use by the calling thread.</summary>
    public Cpu CpuFor(int tid)
    {
        if (!_cpus.TryGetValue(tid, out Cpu? cpu))
        {
            cpu = Space.AttachCpu();
            _cpus[tid] = cpu;
        }
        return cpu;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Cpu cpu in _cpus.Values)
        {
            cpu.Dispose();
        }
        Space.Dispose();
    }
}
