using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Mm;

/// <summary>
/// The state of one address space that every layer above shares (the kernel's <c>mm_struct</c>): the mmap lock, the
/// VMA tree, the page table and its arena, the grace-period domain of its Cpus, the TLB generation, counters.
/// </summary>
/// <remarks>
/// Lock order (outermost first), stated once for the whole library:
/// <list type="number">
/// <item><c>MmapLock</c> (read or write);</item>
/// <item>a VMA's lock: readers via <c>Vma.TryStartRead</c> (never wait); writers via <c>Vma.StartWrite</c> with the mmap write lock held;</item>
/// <item>a PTE table's split lock (<c>PageTable.PteLock</c>);</item>
/// <item><c>PageTable.EnterPageTableLock</c> (upper levels, anon_vma assignment);</item>
/// <item>the frame allocator's lock (leaf).</item>
/// </list>
/// A Cpu read section (<c>RcuReader</c>) may be entered with any of these held, but inside one a thread only
/// <em>try</em>-locks (the speculative path), and no thread waits for a grace period inside one.
/// </remarks>
internal sealed class MemoryDescriptor : IDisposable
{
    private readonly object _counterRegistry = new();
    private readonly List<EventCounters> _cpuCounters = [];
    private readonly long[] _retired = new long[EventNames.Count];
    private int _users;

    /// <summary>Creates the state of an empty address space with its own guest RAM.</summary>
    public MemoryDescriptor(MmSettings settings)
    {
        Settings = settings;
        Memory = new PhysicalMemory(settings.FrameCount, settings.PoisonFreedFrames);
        Rcu = new RcuDomain(Tlb);
        PageTable = new PageTable(Memory);
    }

    /// <summary>The limits and policies this address space was created with.</summary>
    public MmSettings Settings { get; }
    /// <summary><c>mmap_lock</c>.</summary>
    public MmapLock MmapLock { get; } = new();
    /// <summary><c>mm_mt</c>.</summary>
    public VmaTree Tree { get; } = new();
    /// <summary><c>mm->vma_writer_wait</c>.</summary>
    public VmaWriterWait WriterWait { get; } = new();
    /// <summary>Probe points (tests).</summary>
    public ProbeSet Probes { get; } = new();
    /// <summary>Guest RAM.</summary>
    public PhysicalMemory Memory { get; }
    /// <summary>The page table.</summary>
    public PageTable PageTable { get; }
    /// <summary>Grace periods over this address space's Cpus.</summary>
    public RcuDomain Rcu { get; }
    /// <summary>TLB generation (advanced by every grace period of <see cref="Rcu"/>).</summary>
    public TlbGeneration Tlb { get; } = new();
    /// <summary>Counters of events not tied to a Cpu (writers).</summary>
    public EventCounters SharedCounters { get; } = new();

    /// <summary>Frames an unmap gathers before a forced flush under the PTE lock (tests lower it to stage that flush).</summary>
    public int GatherBatchLimit { get; set; } = MmuGather.DefaultBatchLimit;

    /// <summary><c>mm_users</c>: attached Cpus.</summary>
    public int Users => Volatile.Read(ref _users);

    /// <summary><c>MM_ANONPAGES</c>: resident anonymous pages (the sum of the split counters).</summary>
    public long AnonPages => SnapshotCounters()[(int)VmEvent.AnonPages];

    /// <summary>A new, detached VMA of this address space.</summary>
    public Vma CreateVma(ulong start, ulong end, ulong pageOffset, VmFlags flags, Backing.Backing backing,
        MemoryPolicy policy = MemoryPolicy.Default) =>
        new(MmapLock, WriterWait, Probes, start, end, pageOffset, flags, backing, policy);

    /// <summary>Registers a Cpu: its read section joins the grace-period domain and its counters the totals.</summary>
    public void AttachCpu(RcuReader reader, EventCounters counters)
    {
        Rcu.Register(reader);
        lock (_counterRegistry)
        {
            _cpuCounters.Add(counters);
        }
        Interlocked.Increment(ref _users);
    }

    /// <summary>Unregisters a Cpu, keeping its counts.</summary>
    public void DetachCpu(RcuReader reader, EventCounters counters)
    {
        Interlocked.Decrement(ref _users);
        Rcu.Unregister(reader);
        lock (_counterRegistry)
        {
            _cpuCounters.Remove(counters);
            counters.AccumulateInto(_retired);
        }
    }

    /// <summary>Sums every counter: attached Cpus, detached ones, and writers.</summary>
    public long[] SnapshotCounters()
    {
        var totals = new long[EventNames.Count];
        lock (_counterRegistry)
        {
            Array.Copy(_retired, totals, totals.Length);
            foreach (EventCounters c in _cpuCounters)
            {
                c.AccumulateInto(totals);
            }
        }
        SharedCounters.AccumulateInto(totals);
        totals[(int)VmEvent.GracePeriod] = Rcu.GracePeriods;
        totals[(int)VmEvent.GracePeriodReaderWait] = Rcu.ReaderWaits;
        return totals;
    }

    /// <inheritdoc />
    public void Dispose() => Memory.Dispose();
}
