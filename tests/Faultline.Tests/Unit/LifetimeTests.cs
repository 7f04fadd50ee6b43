using System.Reflection;
using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Disposal in every order and misuse of the public surface: a disposed address space or Cpu answers every access and
/// call with <see cref="ObjectDisposedException"/> (never a crash), and a Cpu used by two threads at once is caught.
/// </summary>
public sealed class LifetimeTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x4000_0000;
    private const int JoinMs = 10_000;
    private const Protection ReadWriteExecute = Protection.ReadWrite | Protection.Execute;

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    public static TheoryData<string> Accesses => new()
    {
        "Load", "TryLoad", "Store", "TryStore", "Read", "Write", "CompareExchange32", "CompareExchange64", "Fetch", "TryFetch",
    };

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    // One access of the named kind at an 8-byte aligned address.
    private static void Access(Cpu cpu, string access, ulong address)
    {
        Span<byte> buffer = stackalloc byte[16];
        switch (access)
        {
            case "Load": cpu.Load<long>(address); break;
            case "TryLoad": cpu.TryLoad(address, out long _); break;
            case "Store": cpu.Store(address, 5L); break;
            case "TryStore": cpu.TryStore(address, 5L); break;
            case "Read": cpu.Read(address, buffer); break;
            case "Write": cpu.Write(address, buffer); break;
            case "CompareExchange32": cpu.CompareExchange(address, 1, 0); break;
            case "CompareExchange64": cpu.CompareExchange(address, 1L, 0L); break;
            case "Fetch": cpu.Fetch<int>(address); break;
            case "TryFetch": cpu.TryFetch(address, out int _); break;
            default: throw new ArgumentOutOfRangeException(nameof(access), access);
        }
    }

    // Fills the Cpu's TLB slot for the page with every permission and proves the next accesses are hits.
    private static void Warm(AddressSpace space, Cpu cpu, ulong address)
    {
        cpu.Store(address, 0L);
        cpu.Fetch<int>(address);
        Dictionary<string, long> before = Counters(space);
        cpu.Store(address, 0L);
        cpu.Fetch<int>(address);
        cpu.Load<long>(address);
        Assert.Equal(0, Delta(before, space, "tlb_fill"));
        Assert.Equal(0, Delta(before, space, "pgfault"));
    }

    [Theory]
    [MemberData(nameof(Accesses))]
    public void AccessAfterAddressSpaceDisposedThrowsOnTlbHitAndMiss(string access)
    {
        var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page, ReadWriteExecute);
        Cpu warm = space.AttachCpu();
        Cpu cold = space.AttachCpu();
        Warm(space, warm, a);

        space.Dispose();

        var hit = Assert.Throws<ObjectDisposedException>(() => Access(warm, access, a));
        Assert.Equal(typeof(AddressSpace).FullName, hit.ObjectName);
        var miss = Assert.Throws<ObjectDisposedException>(() => Access(cold, access, a));
        Assert.Equal(typeof(AddressSpace).FullName, miss.ObjectName);
        Assert.Throws<ObjectDisposedException>(() => Access(warm, access, a + Page));
        Assert.Throws<ObjectDisposedException>(() => Access(warm, access, a));
        warm.Dispose();
        cold.Dispose();
        Assert.Throws<ObjectDisposedException>(() => Access(warm, access, a));
    }

    [Theory]
    [MemberData(nameof(Accesses))]
    public void AccessThroughDisposedCpuThrowsOnTlbHitAndMiss(string access)
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page, ReadWriteExecute);
        Cpu cpu = space.AttachCpu();
        Warm(space, cpu, a);
        int framesWithCpu = space.FramesInUse;

        cpu.Dispose();

        Assert.Equal(0, space.CpuCount);
        Assert.True(space.FramesInUse < framesWithCpu, "the Cpu's cached frames go back");
        var hit = Assert.Throws<ObjectDisposedException>(() => Access(cpu, access, a));
        Assert.Equal(typeof(Cpu).FullName, hit.ObjectName);
        Assert.Throws<ObjectDisposedException>(() => Access(cpu, access, a + 2 * Page));
        using Cpu other = space.AttachCpu();
        Assert.Equal(0L, other.Load<long>(a));
        other.Store(a + 2 * Page, 9L);
        Assert.Equal(9L, other.Load<long>(a + 2 * Page));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void CpuAndAddressSpaceMayBeDisposedInEitherOrderAndTwice(bool spaceFirst)
    {
        var space = NewSpace(FaultPath.VmaLock);
        ulong a = MapFixed(space, Base, 64 * Page);
        Cpu cpu = space.AttachCpu();
        Cpu idle = space.AttachCpu();
        for (ulong p = a; p < a + 64 * Page; p += Page)
        {
            cpu.Store(p, (long)p);
        }

        if (spaceFirst)
        {
            space.Dispose();
            cpu.Dispose();
            idle.Dispose();
        }
        else
        {
            cpu.Dispose();
            Assert.Equal(1, space.CpuCount);
            idle.Dispose();
            Assert.Equal(0, space.CpuCount);
            Assert.Equal(64, space.ResidentPages);
            space.Dispose();
        }
        cpu.Dispose();
        idle.Dispose();
        space.Dispose();
        Assert.Throws<ObjectDisposedException>(() => cpu.Load<long>(a));
        Assert.Throws<ObjectDisposedException>(() => space.Map(0, Page, Protection.Read, MapFlags.PrivateAnonymous));
    }

    [Fact]
    public void AttachCpuAfterDisposeThrows()
    {
        var space = NewSpace();
        space.Dispose();
        Assert.Throws<ObjectDisposedException>(space.AttachCpu);
    }

    [Fact]
    public void EveryPublicMemberOfDisposedAddressSpaceThrowsObjectDisposed()
    {
        var space = NewSpace();
        ulong a = MapFixed(space, Base, 4 * Page);
        using (Cpu cpu = space.AttachCpu())
        {
            cpu.Store(a, 1L);
        }
        space.Dispose();

        var calls = new Dictionary<string, Action>
        {
            [nameof(AddressSpace.Map)] = () => space.Map(0, Page, Protection.Read, MapFlags.PrivateAnonymous),
            [nameof(AddressSpace.TryMap)] = () => space.TryMap(0, Page, Protection.Read, MapFlags.PrivateAnonymous, out _),
            [nameof(AddressSpace.MapDevice)] = () => space.MapDevice(0, Page, Protection.Read, MapFlags.Shared, new RecordingDevice(), "dev"),
            [nameof(AddressSpace.TryMapDevice)] = () => space.TryMapDevice(0, Page, Protection.Read, MapFlags.Shared, new RecordingDevice(), "dev", 0, out _),
            [nameof(AddressSpace.Unmap)] = () => space.Unmap(a, Page),
            [nameof(AddressSpace.TryUnmap)] = () => space.TryUnmap(a, Page),
            [nameof(AddressSpace.Protect)] = () => space.Protect(a, Page, Protection.Read),
            [nameof(AddressSpace.TryProtect)] = () => space.TryProtect(a, Page, Protection.Read),
            [nameof(AddressSpace.Remap)] = () => space.Remap(a, Page, 2 * Page, RemapFlags.MayMove),
            [nameof(AddressSpace.TryRemap)] = () => space.TryRemap(a, Page, 2 * Page, RemapFlags.MayMove, 0, out _),
            [nameof(AddressSpace.Advise)] = () => space.Advise(a, Page, Advice.DontNeed),
            [nameof(AddressSpace.TryAdvise)] = () => space.TryAdvise(a, Page, Advice.DontNeed),
            [nameof(AddressSpace.Brk)] = () => space.Brk(0),
            [nameof(AddressSpace.Mincore)] = () => space.Mincore(a, Page, new byte[1]),
            [nameof(AddressSpace.Msync)] = () => space.Msync(a, Page, SyncFlags.Sync),
            [nameof(AddressSpace.Seal)] = () => space.Seal(a, Page),
            [nameof(AddressSpace.Lock)] = () => space.Lock(a, Page),
            [nameof(AddressSpace.Unlock)] = () => space.Unlock(a, Page),
            [nameof(AddressSpace.LockAll)] = () => space.LockAll(LockAllFlags.Current),
            [nameof(AddressSpace.UnlockAll)] = () => space.UnlockAll(),
            [nameof(AddressSpace.LockedPages)] = () => _ = space.LockedPages,
            [nameof(AddressSpace.AttachCpu)] = () => space.AttachCpu(),
            [nameof(AddressSpace.GetMappings)] = () => space.GetMappings(),
            [nameof(AddressSpace.GetMaps)] = () => space.GetMaps(),
            [nameof(AddressSpace.GetSmaps)] = () => space.GetSmaps(),
            [nameof(AddressSpace.HugePageCollapseScans)] = () => _ = space.HugePageCollapseScans,
            [nameof(AddressSpace.IsResident)] = () => space.IsResident(a),
            [nameof(AddressSpace.CountResidentPages)] = () => space.CountResidentPages(a, a + Page),
            [nameof(AddressSpace.GetCounters)] = () => space.GetCounters(),
            [nameof(AddressSpace.Fork)] = () => space.Fork(),
            [nameof(AddressSpace.GetPageMappings)] = () => space.GetPageMappings(a),
            [nameof(AddressSpace.CpuCount)] = () => _ = space.CpuCount,
            [nameof(AddressSpace.MapCount)] = () => _ = space.MapCount,
            [nameof(AddressSpace.ResidentPages)] = () => _ = space.ResidentPages,
            [nameof(AddressSpace.FramesInUse)] = () => _ = space.FramesInUse,
            [nameof(AddressSpace.PoisonViolations)] = () => _ = space.PoisonViolations,
            [nameof(AddressSpace.PageTablePages)] = () => _ = space.PageTablePages,
            [nameof(AddressSpace.MapHostMemory)] = () => space.MapHostMemory(0, Page, Protection.Read, MapFlags.Shared, 4096),
            [nameof(AddressSpace.TryMapHostMemory)] = () => space.TryMapHostMemory(0, Page, Protection.Read, MapFlags.Shared, 4096, out _),
            [nameof(AddressSpace.Pin)] = () => space.Pin(a, Page, write: false),
            [nameof(AddressSpace.TryPin)] = () => space.TryPin(a, Page, write: false, out _),
            [nameof(AddressSpace.ClearSoftDirty)] = () => space.ClearSoftDirty(),
            [nameof(AddressSpace.ReadPageMap)] = () => space.ReadPageMap(a, new ulong[1]),
            [nameof(AddressSpace.GetAndClearDirtyLog)] = () => space.GetAndClearDirtyLog(a, Page, new ulong[1]),
            [nameof(AddressSpace.TryGetAndClearDirtyLog)] = () => space.TryGetAndClearDirtyLog(a, Page, new ulong[1], out _),
            [nameof(AddressSpace.WatchWrites)] = () => space.WatchWrites(a, Page, (_, _) => { }),
            [nameof(AddressSpace.SwapTotalBytes)] = () => _ = space.SwapTotalBytes,
            [nameof(AddressSpace.SwapFreeBytes)] = () => _ = space.SwapFreeBytes,
            [nameof(AddressSpace.SwapCachedBytes)] = () => _ = space.SwapCachedBytes,
        };
        foreach ((string name, Action call) in calls)
        {
            var error = Record.Exception(call);
            Assert.True(error is ObjectDisposedException, $"{name} after Dispose: {error?.GetType().Name ?? "no exception"}");
        }

        // Configuration stays readable, and the list above must name every other public member.
        Assert.Equal(FaultPath.MmapLock, space.FaultPath);
        Assert.True(space.Id > 0);
        Assert.NotNull(space.Options);
        // The memory group outlives its members, as a cgroup outlives its tasks (its usage is read after they go).
        Assert.Null(space.MemoryGroup);
        string[] exempt = [nameof(AddressSpace.Id), nameof(AddressSpace.Options), nameof(AddressSpace.FaultPath), nameof(AddressSpace.Dispose),
            nameof(AddressSpace.MemoryGroup)];
        const BindingFlags Declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        IEnumerable<string> members = typeof(AddressSpace).GetMethods(Declared).Where(m => !m.IsSpecialName).Select(m => m.Name)
            .Concat(typeof(AddressSpace).GetProperties(Declared).Select(p => p.Name));
        Assert.Equal(members.Except(exempt).Distinct().Order(), calls.Keys.Order());
    }

    // A fault stopped inside its handler while another thread disposes the address space: the disposal waits for
    // the fault, which finishes with guest memory still there; the access it was for is then refused.
    [Theory]
    [MemberData(nameof(Paths))]
    public void FaultInFlightWhileAddressSpaceIsDisposedGetsObjectDisposed(FaultPath path)
    {
        var space = NewSpace(path);
        ulong a = MapFixed(space, Base, 16 * Page);
        Cpu toucher = space.AttachCpu();
        Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L); // the VMA gets its anon_vma, so the speculative path can handle the next fault
        ProbePoint point = path switch
        {
            FaultPath.Speculative => ProbePoint.SpeculativeBeforeHandle,
            FaultPath.VmaLock => ProbePoint.VmaLockLocked,
            _ => ProbePoint.ClassicLocked,
        };
        Dictionary<string, long> before = Counters(space);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, point, ThreadRole.Is("faulter"));
        ThreadRunner<Exception?> fault = threads.Run<Exception?>("faulter", () => Record.Exception(() => cpu.Store(a + 5 * Page, 7L)));
        gate.WaitArrived();
        Assert.Equal(1, Delta(before, space, "pgfault"));
        ThreadRunner<bool> disposer = threads.Run("disposer", () =>
        {
            space.Dispose();
            return true;
        });
        ThreadRole.WaitUntil(() => space.Descriptor.IsExiting, "the disposal began");
        Assert.False(SpinWait.SpinUntil(() => disposer.IsDone, 100), "the disposal must wait for the fault in flight");
        gate.Release();

        Assert.IsType<ObjectDisposedException>(fault.Join(JoinMs));
        Assert.True(disposer.Join(JoinMs));
        Assert.Throws<ObjectDisposedException>(() => toucher.Load<long>(a));
        Assert.Throws<ObjectDisposedException>(() => cpu.Load<long>(a + 5 * Page));
        cpu.Dispose();
        toucher.Dispose();
    }

    // Cpus hammering hits, misses and faults while the address space is disposed under them: each ends with
    // ObjectDisposedException, whatever it was doing.
    [Theory]
    [MemberData(nameof(Paths))]
    public void DisposeWhileCpusAccessEndsEveryCpuWithObjectDisposed(FaultPath path)
    {
        const int Threads = 3;
        const ulong Pages = 256;
        var space = NewSpace(path);
        ulong a = MapFixed(space, Base, Pages * Page);
        var cpus = Enumerable.Range(0, Threads).Select(_ => space.AttachCpu()).ToArray();
        cpus[0].Store(a, 1L);
        var started = new CountdownEvent(Threads);

        using var threads = new ThreadScope();
        var runners = cpus.Select((cpu, t) => threads.Run($"cpu{t}", () =>
        {
            started.Signal();
            try
            {
                for (ulong i = 0; ; i++)
                {
                    ulong page = a + (i * 7 + (ulong)t) % Pages * Page;
                    cpu.Store(page + 8, (long)i);
                    cpu.Load<long>(page + 8);
                    cpu.Load<long>(a);
                }
            }
            catch (ObjectDisposedException e)
            {
                return e;
            }
        })).ToArray();
        Assert.True(started.Wait(JoinMs));
        Thread.Sleep(50);
        space.Dispose();

        foreach (var runner in runners)
        {
            Assert.NotNull(runner.Join(JoinMs));
        }
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }
    }

    // A second thread uses a Cpu while its owner is stopped inside a fault: caught in the slow path, and the owner's
    // access completes undisturbed.
    [Fact]
    public void CpuUsedBySecondThreadWhileInsideFaultThrowsInvalidOperation()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, ProbePoint.ClassicLocked, ThreadRole.Is("owner"));
        ThreadRunner<bool> owner = threads.Run("owner", () =>
        {
            cpu.Store(a + 3 * Page, 3L);
            return true;
        });
        gate.WaitArrived();

        var miss = Assert.Throws<InvalidOperationException>(() => cpu.Load<long>(a + 5 * Page));
        Assert.Equal("a Cpu is used by one thread at a time", miss.Message);
        Assert.Throws<InvalidOperationException>(() => cpu.Store(a + 6 * Page, 6L));
        Assert.Throws<InvalidOperationException>(cpu.Dispose);
        gate.Release();

        Assert.True(owner.Join(JoinMs));
        Assert.Equal(3L, cpu.Load<long>(a + 3 * Page));
        Assert.Equal(1L, cpu.Load<long>(a));
        Assert.Equal(2, space.ResidentPages);
        cpu.Dispose();
        Assert.Equal(0, space.CpuCount);
    }
}
