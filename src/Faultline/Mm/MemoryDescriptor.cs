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
/// <item>a VMA's lock: readers via <c>Vma.TryStartRead</c> (never wait); writers via <c>Vma.StartWrite</c> with the mmap write lock held;
/// then a shared-memory object's mapping lock (<c>i_mmap_rwsem</c>; a hole punch holds it across zaps and grace periods);</item>
/// <item>an anon_vma family's lock (<c>AnonVma.EnterFamilyLock</c>: reverse-map links and walks);</item>
/// <item>a PTE table's split lock (<c>PageTable.PteLock</c>);</item>
/// <item><c>PageTable.EnterPageTableLock</c> (upper levels, anon_vma assignment);</item>
/// <item>the frame allocator's lock, and a shared-memory object's page-index lock (leaves).</item>
/// </list>
/// A Cpu read section (<c>RcuReader</c>) may be entered with any of these held, but inside one a thread only
/// <em>try</em>-locks (the speculative path), and no thread waits for a grace period inside one.
/// </remarks>
internal sealed class MemoryDescriptor : IDisposable
{
    private readonly object _registry = new();
    private readonly List<EventCounters> _cpuCounters = [];
    private readonly List<UseClaim> _claims = [];
    private readonly long[] _retired = new long[EventNames.Count];
    private readonly RcuRecycler<Vma> _vmas;
    // Gathers of finished unmaps and protects, for the next one (under the lock of the stack itself: munmap and
    // MADV_DONTNEED gather under the mmap read lock, so several may run at once).
    private readonly Stack<MmuGather> _gathers = new();
    private int _users;
    private int _exiting;
    private ulong _brk;

    /// <summary>Creates the state of an empty address space with its own guest RAM.</summary>
    public MemoryDescriptor(MmSettings settings)
        : this(settings, new PhysicalMemory(settings.FrameCount, settings.PoisonFreedFrames, settings.BackgroundZeroing), ownsMemory: true)
    {
    }

    /// <summary>
    /// Creates the state of an empty address space over guest RAM that other address spaces use too (as a forked
    /// child shares its parent's frames). The arena goes back to the host when its last user is disposed.
    /// </summary>
    public MemoryDescriptor(MmSettings settings, PhysicalMemory sharedMemory)
        : this(settings, sharedMemory, ownsMemory: false)
    {
    }

    private MemoryDescriptor(MmSettings settings, PhysicalMemory memory, bool ownsMemory)
    {
        if (!ownsMemory)
        {
            memory.AddUser();
        }
        Settings = settings;
        StartBrk = settings.BrkStart;
        Brk = settings.BrkStart;
        Memory = memory;
        Rcu = new RcuDomain(Tlb);
        Tree = new VmaTree(Rcu, MmapLock);
        _vmas = new RcuRecycler<Vma>(Rcu);
        try
        {
            PageTable = new PageTable(Memory);
            PageTable.Events = SharedCounters;
        }
        catch (OutOfMemoryException)
        {
            // No frame for the root: this user of the arena never existed.
            memory.Dispose();
            throw;
        }
        Node = MemoryNode.Attach(memory, settings.Swap);
        PageTable.SwapEntries = Node?.Swap;
        Owner = this;
        Zapper = new MappingZapper(this);
    }

    /// <summary>
    /// The memory group this address space's pages are charged to (its cgroup); null when it has none (unlimited, no
    /// accounting). Set once by the owner before anything can fault, fork or map (a plain field read by faults: the
    /// address space is published to other threads after it is set).
    /// </summary>
    public ChargeGroup? Group
    {
        get => PageTable.Charge;
        set => PageTable.Charge = value;
    }

    /// <summary>The arena's reclaim state and swap areas; null when no swap area was configured.</summary>
    public MemoryNode? Node { get; }

    /// <summary>This address space's side of page-cache backings' reverse maps (<c>unmap_mapping_range</c>).</summary>
    public Backing.IMappingZapper Zapper { get; }

    /// <summary>
    /// The public object this address space serves (set once by it, before anything can fork or walk it); the reverse
    /// map reports owners by it. The descriptor itself until set.
    /// </summary>
    public object Owner { get; set; }

    /// <summary>The limits and policies this address space was created with.</summary>
    public MmSettings Settings { get; }
    /// <summary><c>mmap_lock</c>.</summary>
    public MmapLock MmapLock { get; } = new();
    /// <summary><c>mm_mt</c>.</summary>
    public VmaTree Tree { get; }
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
    /// <summary>The user-fault channels over this address space (their blocked faults wake at teardown).</summary>
    public UserFaultRegistry UserFaults { get; } = new();
    /// <summary>Counters of events not tied to a Cpu (writers).</summary>
    public EventCounters SharedCounters { get; } = new();

    /// <summary>Frames an unmap gathers before a forced flush under the PTE lock (tests lower it to stage that flush).</summary>
    public int GatherBatchLimit { get; set; } = MmuGather.DefaultBatchLimit;

    /// <summary><c>mm->start_brk</c>: where the heap begins. Set once, at creation.</summary>
    public ulong StartBrk { get; }

    /// <summary>
    /// <c>mm->brk</c>: the program break, unaligned as the caller gave it. Written under the mmap write lock with a
    /// release store; the maps text reads it with an acquire load and no lock (it may name the heap by the break
    /// before or after a brk in flight, as <c>/proc/pid/maps</c> may).
    /// </summary>
    public ulong Brk
    {
        get => Volatile.Read(ref _brk);
        set => Volatile.Write(ref _brk, value);
    }

    /// <summary><c>mm->locked_vm</c>: pages in <c>VM_LOCKED</c> VMAs. Changed under the mmap write lock.</summary>
    public long LockedPages { get; set; }

    /// <summary>
    /// <c>mm->def_flags</c>: flags every new VMA gets (<c>VM_LOCKED</c>, with <c>VM_LOCKONFAULT</c>, after
    /// <c>mlockall(MCL_FUTURE)</c>). Changed under the mmap write lock.
    /// </summary>
    public VmFlags DefaultFlags { get; set; }

    /// <summary>
    /// <c>mlock_future_ok</c>: whether <paramref name="bytes"/> more locked memory fit under the lock limit, for a new
    /// VMA with <paramref name="flags"/> (always, unless it is locked and the space lacks <c>CAP_IPC_LOCK</c>).
    /// </summary>
    public bool MayLockMore(VmFlags flags, ulong bytes) =>
        (flags & VmFlags.Locked) == 0 || Settings.CapIpcLock
        || (ulong)LockedPages + (bytes >> PageGeometry.PageShift) <= Settings.MemoryLockLimit >> PageGeometry.PageShift;

    /// <summary><c>can_do_mlock</c>: a lock limit above zero, or <c>CAP_IPC_LOCK</c>.</summary>
    public bool CanLock => Settings.MemoryLockLimit != 0 || Settings.CapIpcLock;

    /// <summary><c>mm_users</c>: attached Cpus.</summary>
    public int Users => Volatile.Read(ref _users);

    /// <summary><c>MM_ANONPAGES</c>: resident anonymous pages (the sum of the split counters).</summary>
    public long AnonPages => SnapshotCounters()[(int)VmEvent.AnonPages];

    /// <summary><c>MM_SHMEMPAGES</c>: resident shared-memory pages mapped (the sum of the split counters).</summary>
    public long ShmemPages => SnapshotCounters()[(int)VmEvent.ShmemPages];

    /// <summary>
    /// A new, detached VMA of this address space (<c>vm_area_alloc</c>): a retired one no reader can still hold when
    /// there is one, else a new object. Caller holds the mmap lock for write.
    /// </summary>
    public Vma CreateVma(ulong start, ulong end, ulong pageOffset, VmFlags flags, Backing.IBacking backing,
        MemoryPolicy policy = MemoryPolicy.Default)
    {
        // Reuse pairs with the walk sections of lockless readers (RcuRecycler): every section that could have reached
        // this VMA ended before the epoch moved twice; a per-VMA-lock reader that took it before it was detached was
        // waited out by vma_mark_detached.
        if (_vmas.TryTake(out Vma? vma))
        {
            vma.Reinitialise(start, end, pageOffset, flags, backing, policy);
            return vma;
        }
        return new Vma(MmapLock, WriterWait, Probes, start, end, pageOffset, flags, backing, policy);
    }

    /// <summary>
    /// <c>vm_area_free</c> of a VMA that left the tree (detached, unlinked, closed): reused once no lockless reader
    /// can still hold it. Caller holds the mmap lock for write and may go on reading the VMA until its section ends.
    /// </summary>
    public void RetireVma(Vma vma) => _vmas.Retire(vma);

    /// <summary>The VMA recycler (tests).</summary>
    internal RcuRecycler<Vma> Vmas => _vmas;

    /// <summary>
    /// <c>tlb_gather_mmu</c>: an empty gather over this address space, reused from a finished one when there is one.
    /// Give it back with <see cref="ReturnGather"/> after <see cref="MmuGather.Finish"/>. Thread-safe.
    /// </summary>
    public MmuGather RentGather()
    {
        MmuGather? gather;
        lock (_gathers)
        {
            _gathers.TryPop(out gather);
        }
        gather ??= new MmuGather(Memory, Rcu);
        gather.Reuse(GatherBatchLimit);
        return gather;
    }

    /// <summary>Gives back a finished gather (<c>tlb_finish_mmu</c> done) for the next caller. Thread-safe.</summary>
    public void ReturnGather(MmuGather gather)
    {
        Debug.Assert(gather.IsEmpty, "a gather returned with work left");
        lock (_gathers)
        {
            if (_gathers.Count < MaxPooledGathers)
            {
                _gathers.Push(gather);
            }
        }
    }

    // Concurrent unmappers beyond this many allocate their gather.
    private const int MaxPooledGathers = 4;

    /// <summary>
    /// True once <see cref="Dispose"/> began: an acquire read, pairing with the exchange that sets the mark. Operations
    /// read it after taking the mmap lock, slow paths after claiming their Cpu (see <see cref="Dispose"/>).
    /// </summary>
    public bool IsExiting => Volatile.Read(ref _exiting) != 0;

    /// <summary>
    /// <c>mmap_write_lock</c>, refusing an address space being torn down with <see cref="ObjectDisposedException"/>
    /// naming <paramref name="owner"/> (the public object the caller serves).
    /// </summary>
    public void EnterWriteUnlessExiting(object owner)
    {
        MmapLock.EnterWrite();
        // Dispose sets the mark before taking this lock, so a writer that gets the lock after the teardown sees the
        // mark (the lock's release and acquire order it).
        if (IsExiting)
        {
            MmapLock.ExitWrite();
            ObjectDisposedException.ThrowIf(true, owner);
        }
    }

    /// <summary><c>mmap_read_lock</c> for a diagnostic walk, refusing an address space being torn down (as <see cref="EnterWriteUnlessExiting"/>).</summary>
    public void EnterReadUnlessExiting(object owner)
    {
        MmapLock.EnterRead();
        // As above: the lock orders this read after the mark Dispose set before taking the lock for write.
        if (IsExiting)
        {
            MmapLock.ExitRead();
            ObjectDisposedException.ThrowIf(true, owner);
        }
    }

    /// <summary>
    /// Registers a Cpu: its read section joins the grace-period domain, its claim the teardown's wait, its counters
    /// the totals. False, registering nothing, once the address space is being torn down.
    /// </summary>
    public bool TryAttachCpu(RcuReader reader, EventCounters counters, UseClaim claim)
    {
        lock (_registry)
        {
            if (!TryAttachContext(reader, claim))
            {
                return false;
            }
            _cpuCounters.Add(counters);
        }
        Interlocked.Increment(ref _users);
        return true;
    }

    /// <summary>
    /// Registers a fault context that is not a user (MAP_POPULATE's): its read section and its claim. False once the
    /// address space is being torn down.
    /// </summary>
    public bool TryAttachContext(RcuReader reader, UseClaim claim)
    {
        lock (_registry)
        {
            // Dispose snapshots the claims under this lock after setting the mark: a context registered later sees it.
            if (IsExiting)
            {
                return false;
            }
            Rcu.Register(reader);
            _claims.Add(claim);
            return true;
        }
    }

    /// <summary>Unregisters a context registered with <see cref="TryAttachContext"/>.</summary>
    public void DetachContext(RcuReader reader, UseClaim claim)
    {
        lock (_registry)
        {
            Rcu.Unregister(reader);
            _claims.Remove(claim);
        }
    }

    /// <summary>Unregisters a Cpu, keeping its counts.</summary>
    public void DetachCpu(RcuReader reader, EventCounters counters, UseClaim claim)
    {
        Interlocked.Decrement(ref _users);
        lock (_registry)
        {
            DetachContext(reader, claim);
            _cpuCounters.Remove(counters);
            counters.AccumulateInto(_retired);
        }
    }

    /// <summary>Sums every counter: attached Cpus, detached ones, and writers.</summary>
    public long[] SnapshotCounters()
    {
        var totals = new long[EventNames.Count];
        lock (_registry)
        {
            Array.Copy(_retired, totals, totals.Length);
            foreach (EventCounters c in _cpuCounters)
            {
                c.AccumulateInto(totals);
            }
        }
        SharedCounters.AccumulateInto(totals);
        Node?.Counters.AccumulateInto(totals);
        totals[(int)VmEvent.GracePeriod] = Rcu.GracePeriods;
        totals[(int)VmEvent.GracePeriodReaderWait] = Rcu.ReaderWaits;
        return totals;
    }

    /// <summary>
    /// <c>exit_mmap</c> for an address space torn down while Cpus may still be attached, even in use on other threads:
    /// afterwards every Cpu's next slow path and every operation that takes the mmap lock find <see cref="IsExiting"/>
    /// set, and guest memory is released. A second call returns at once.
    /// </summary>
    /// <remarks>
    /// The order is what makes the release safe:
    /// <list type="number">
    /// <item>the mark, then a process-wide barrier, then a wait for every claim: slow paths in flight (TLB miss, a
    /// fault on any of the three paths, a Cpu detaching, MAP_POPULATE) finish, and one that claims later sees the
    /// mark (<see cref="UseClaim"/>). The speculative and VMA-lock paths hold no mmap lock, so the lock alone would
    /// not wait for them; and this comes before taking the lock because a classic fault keeps its claim while it
    /// waits for the mmap read lock;</item>
    /// <item>the mmap write lock: map, unmap, protect and diagnostic walks in flight finish; later ones see the mark
    /// once they hold the lock (the lock's release and acquire order it);</item>
    /// <item>a grace period: it bumps the TLB generation, so every Cpu's next access misses its hit path and reaches
    /// the slow path, which sees the mark; and it waits for the read sections that began before the bump, the
    /// hit-path accesses that may still be touching a frame;</item>
    /// <item>only then this address space stops using the arena. If other address spaces still use it, every page
    /// and table this one maps is given back first (<c>unmap_vmas</c> and <c>free_pgtables</c> of <c>exit_mmap</c>),
    /// so shared frames lose this space's references; the last user returns the whole arena to the host.</item>
    /// </list>
    /// </remarks>
    public void Dispose()
    {
        // Full fence; pairs with the acquire reads of IsExiting (after a claim store, or after taking the mmap lock).
        if (Interlocked.Exchange(ref _exiting, 1) != 0)
        {
            return;
        }
        // Pairs with the plain claim store and exit-mark read of every slow path (UseClaim's remarks).
        Interlocked.MemoryBarrierProcessWide();
        // A fault asleep on a user-fault channel holds its claim: wake it (it sees the mark and ends with SIGBUS).
        UserFaults.WakeAll();
        UseClaim[] claims;
        lock (_registry)
        {
            claims = [.. _claims];
        }
        foreach (UseClaim claim in claims)
        {
            claim.WaitUntilFree();
        }
        MmapLock.EnterWrite();
        try
        {
            Rcu.Synchronize();
            // unlink_anon_vmas of exit_mmap: reverse-map walks from other address spaces stop finding these VMAs
            // before their tables go.
            foreach (Vma vma in Tree.All())
            {
                vma.AnonVma?.Unlink(vma);
                // unlink_file_vma likewise: a hole punch from another address space stops zapping here, and the last
                // mapping of a shared-memory object releases its pages.
                (vma.Backing as Backing.IPageCacheBacking)?.Unlink(vma);
            }
            if (Memory.Users > 1)
            {
                ReleaseMappings();
            }
            // The last user stops the reclaimer before the arena goes (it may be working on this arena's frames).
            Node?.Detach();
            Memory.Dispose();
        }
        finally
        {
            MmapLock.ExitWrite();
        }
    }

    // exit_mmap over an arena that outlives this address space: no Cpu of it runs any more (claims waited, grace
    // period passed), so the whole range is zapped and its tables freed; shared frames keep other spaces' references.
    private void ReleaseMappings()
    {
        var gather = new MmuGather(Memory, Rcu, GatherBatchLimit);
        PageTable.Zap(0, PageGeometry.TranslatedAddressEnd, gather, Probes);
        PageTable.FreeTables(0, PageGeometry.TranslatedAddressEnd, 0, PageGeometry.TranslatedAddressEnd, gather);
        gather.Finish(Probes);
        PageTable.FreeRoot();
    }

    private int _hasDeviceMappings;

    /// <summary>
    /// True once a device (MMIO) mapping was made in this address space; never cleared. An acquire read, pairing with
    /// <see cref="NoteDeviceMapping"/>: a Cpu that misses it takes the ordinary fault, which still finds the device.
    /// </summary>
    public bool HasDeviceMappings => Volatile.Read(ref _hasDeviceMappings) != 0;

    /// <summary>Records a device mapping (release store, before the VMA is published).</summary>
    public void NoteDeviceMapping() => Volatile.Write(ref _hasDeviceMappings, 1);
}
