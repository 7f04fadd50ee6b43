using Faultline.Mm;
using Faultline.Physical;

namespace Faultline;

/// <summary>
/// A memory limit over a group of address spaces that share guest RAM: the cgroup v2 memory controller's
/// <c>memory.max</c>, <c>memory.current</c>, <c>memory.peak</c>, <c>memory.events</c> and part of
/// <c>memory.stat</c>. A top-level address space gets one from <see cref="FaultlineOptions.MemoryLimitBytes"/>; a
/// forked child stays in its parent's group (as a forked task stays in its cgroup) unless forked into another one
/// with <see cref="AddressSpace.Fork(MemoryGroup)"/>; <see cref="Create"/> makes a sibling group over the same RAM.
/// </summary>
/// <remarks>
/// <para>
/// Charging: every frame a member allocates for itself is charged to the group when it is allocated and uncharged
/// when it is finally freed (the last reference goes): anonymous first touch, copy-on-write copies, huge pages (512
/// frames), swap-ins (charged to the faulting member, whoever swapped the page out), a fork's copy of a pinned page,
/// <c>UFFDIO_COPY</c> pages; a page-cache or shared-memory page is charged to the group of the first member that maps
/// it with a fault (Linux charges whoever reads it in; Faultline's backings do not know the reader, so a page read
/// only through <see cref="GuestFile"/> is charged to no group). Page-table pages are not charged. The charge is one
/// atomic add on the group's counter, kept with the frame, so it is dropped exactly once whoever frees the frame.
/// </para>
/// <para>
/// Over the limit, a fault reclaims from this group only (<c>try_to_free_mem_cgroup_pages</c>: each group has its own
/// LRU lists, so another group's pages are never taken for it): anonymous pages go to the swap area
/// (<see cref="FaultlineOptions.Swap"/>) and clean <c>MADV_FREE</c> pages are discarded. After
/// <c>MAX_RECLAIM_RETRIES</c> (16) rounds that free nothing the group is out of memory: <see cref="OomEvents"/> is
/// counted and <see cref="OutOfMemoryHandler"/> is asked; if it made no room, the access fails as it does when guest
/// RAM runs out (<see cref="GuestOutOfMemoryException"/>; <see cref="Errno.ENOMEM"/> from populate and mlock) and
/// <see cref="OomKillEvents"/> is counted: the faulting access is the OOM killer's victim, nothing else is killed.
/// Without a swap area nothing is reclaimable and a charge over the limit goes straight to the group's OOM.
/// </para>
/// <para>
/// The fault paths follow the memcg OOM protocol of the speculative page fault series (v11, 2018-05-17): each
/// handler runs inside <c>mem_cgroup_oom_enable()</c>/<c>_disable()</c>; a charge failing there records the group on
/// the Cpu; a result other than OOM clears the record (<c>mem_cgroup_oom_synchronize(false)</c>); the speculative
/// path turns a failed charge into a retry on the classic path, which charges again under the mmap lock; the
/// group's reclaim and OOM run at the end of the fault with no lock held (<c>pagefault_out_of_memory</c>).
/// </para>
/// <para>
/// Thread-safety: every member is thread-safe and may be called while members fault on other threads. Lifetime: a
/// group needs no disposal; it lives while an address space or a frame refers to it. At most 63 groups can be made
/// over one guest RAM (each has LRU lists there).
/// </para>
/// </remarks>
public sealed class MemoryGroup
{
    private readonly PhysicalMemory _memory;
    private Func<MemoryGroup, bool>? _handler;

    private MemoryGroup(PhysicalMemory memory, ChargeGroup charge)
    {
        _memory = memory;
        Charge = charge;
    }

    /// <summary>The accounting core the fault paths charge.</summary>
    internal ChargeGroup Charge { get; }

    /// <summary>True when <paramref name="memory"/> is the guest RAM this group accounts for.</summary>
    internal bool Accounts(PhysicalMemory memory) => ReferenceEquals(memory, _memory);

    /// <summary>
    /// Makes a new group over the guest RAM of <paramref name="member"/> (<c>mkdir</c> of a sibling cgroup); address
    /// spaces join it by being forked into it (<see cref="AddressSpace.Fork(MemoryGroup)"/>).
    /// </summary>
    /// <param name="member">An address space over the RAM the group is to account.</param>
    /// <param name="limitBytes"><c>memory.max</c> in bytes (rounded down to whole pages), or null for none.</param>
    /// <exception cref="MemoryOperationException"><see cref="Errno.EINVAL"/> for a negative limit;
    /// <see cref="Errno.ENOSPC"/> when the RAM has the most groups it can have.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="member"/> is disposed.</exception>
    public static MemoryGroup Create(AddressSpace member, long? limitBytes = null)
    {
        ArgumentNullException.ThrowIfNull(member);
        return CreateOver(member.GuestMemory, limitBytes, "mkdir");
    }

    /// <summary>A new group over <paramref name="memory"/>; errors as <see cref="Create(AddressSpace, long?)"/>.</summary>
    internal static MemoryGroup CreateOver(PhysicalMemory memory, long? limitBytes, string operation)
    {
        long maxPages = ToPages(limitBytes, operation);
        ChargeGroup charge = memory.TryAddGroup(maxPages) ?? throw new MemoryOperationException(operation, Errno.ENOSPC);
        var group = new MemoryGroup(memory, charge);
        group.Charge.OutOfMemory = group.InvokeHandler;
        return group;
    }

    /// <summary>
    /// <c>memory.max</c>: the limit in bytes (a multiple of the page size), or null for none. Setting it below
    /// <see cref="UsageBytes"/> reclaims from the group until the usage fits, as writing <c>memory.max</c> does; when
    /// that fails, <see cref="OomEvents"/> is counted and <see cref="OutOfMemoryHandler"/> asked, and the new limit holds
    /// anyway (the usage above it only makes new charges fail), as the kernel's write succeeds. Values are rounded down
    /// to whole pages.
    /// </summary>
    /// <exception cref="MemoryOperationException"><see cref="Errno.EINVAL"/> for a negative value; the limit is unchanged.</exception>
    public long? LimitBytes
    {
        get
        {
            long max = Charge.Max;
            return max == ChargeGroup.Unlimited ? null : max * PageGeometry.PageSize;
        }
        set
        {
            Charge.Max = ToPages(value, "write memory.max");
            if (Charge.Usage <= Charge.Max || !_memory.TryAddUser())
            {
                return;
            }
            // The arena (and its node, if any) stays while the reclaim runs, whatever the members do meanwhile.
            MemoryNode? node = MemoryNode.AttachExisting(_memory);
            try
            {
                GroupReclaim.ShrinkToLimit(node, Charge);
            }
            finally
            {
                node?.Detach();
                _memory.Dispose();
            }
        }
    }

    /// <summary><c>memory.current</c>: bytes charged to the group now.</summary>
    public long UsageBytes => Charge.Usage * PageGeometry.PageSize;

    /// <summary><c>memory.peak</c>: the most bytes charged at once since the group was made or <see cref="ResetPeak"/>.</summary>
    public long PeakBytes => Charge.Peak * PageGeometry.PageSize;

    /// <summary>Starts <see cref="PeakBytes"/> again from the usage now (a write to <c>memory.peak</c>).</summary>
    public void ResetPeak() => Charge.ResetPeak();

    /// <summary><c>memory.events</c> <c>max</c>: charges that would have passed the limit.</summary>
    public long MaxEvents => Charge.Read(ChargeEvent.Max);

    /// <summary><c>memory.events</c> <c>oom</c>: times reclaim could not bring the group under its limit.</summary>
    public long OomEvents => Charge.Read(ChargeEvent.Oom);

    /// <summary><c>memory.events</c> <c>oom_kill</c>: accesses failed as the group's OOM victim.</summary>
    public long OomKillEvents => Charge.Read(ChargeEvent.OomKill);

    /// <summary>
    /// Stands for the OOM killer: called, on the thread that hit the limit and with no lock held, once reclaim
    /// could not make room. Return true after making room (raising <see cref="LimitBytes"/>, unmapping memory of a
    /// member) to have the charge tried again; false to let the access fail. Null (the default): accesses fail. An
    /// exception it throws reaches the faulting access (or the limit write).
    /// </summary>
    public Func<MemoryGroup, bool>? OutOfMemoryHandler
    {
        get => Volatile.Read(ref _handler);
        set => Volatile.Write(ref _handler, value);
    }

    /// <summary>
    /// <c>memory.events</c>, by the kernel's names: <c>max</c>, <c>oom</c>, <c>oom_kill</c> (<c>low</c> and
    /// <c>high</c> are not kept: there are no such limits here).
    /// </summary>
    public IReadOnlyDictionary<string, long> ReadEvents() => new Dictionary<string, long>
    {
        ["max"] = MaxEvents,
        ["oom"] = OomEvents,
        ["oom_kill"] = OomKillEvents,
    };

    /// <summary>
    /// Part of <c>memory.stat</c>, by the kernel's names: <c>anon</c>, <c>file</c> (shared memory included, as there),
    /// <c>shmem</c> (bytes charged now),
    /// <c>pgscan</c>, <c>pgsteal</c> (pages reclaim looked at and freed, under this limit or for the whole RAM),
    /// <c>pswpout</c> and <c>workingset_refault_anon</c> (every swap-in of a member counts: no refault distance is kept).
    /// </summary>
    public IReadOnlyDictionary<string, long> ReadStat() => new Dictionary<string, long>
    {
        ["anon"] = Charge.AnonPages * PageGeometry.PageSize,
        ["file"] = (Charge.FilePages + Charge.ShmemPages) * PageGeometry.PageSize,
        ["shmem"] = Charge.ShmemPages * PageGeometry.PageSize,
        ["pgscan"] = Charge.Read(ChargeEvent.Scan),
        ["pgsteal"] = Charge.Read(ChargeEvent.Steal),
        ["pswpout"] = Charge.Read(ChargeEvent.SwapOut),
        ["workingset_refault_anon"] = Charge.Read(ChargeEvent.RefaultAnon),
    };

    private bool InvokeHandler() => OutOfMemoryHandler?.Invoke(this) == true;

    private static long ToPages(long? bytes, string operation)
    {
        if (bytes is null)
        {
            return ChargeGroup.Unlimited;
        }
        if (bytes < 0)
        {
            throw new MemoryOperationException(operation, Errno.EINVAL);
        }
        return bytes.Value / PageGeometry.PageSize;
    }
}
