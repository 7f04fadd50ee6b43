using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// Memory-mapped I/O regions (<see cref="AddressSpace.MapDevice"/>): every access reaches the device on each fault
/// path, nothing is cached in the TLB, protections apply as for memory, and the control plane follows the kernel's
/// rules for a <c>VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP</c> VMA.
/// </summary>
public sealed class DeviceMappingTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x7000_0000;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    private static AddressSpace NewSpace(FaultPath path) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    private static ulong MapDevice(AddressSpace space, RecordingDevice device, ulong pages = 4, Protection protection = Protection.ReadWrite,
        ulong deviceOffset = 0) =>
        space.MapDevice(Base, pages * Page, protection, MapFlags.Shared | MapFlags.Fixed, device, "/dev/test-mmio", deviceOffset);

    [Theory]
    [MemberData(nameof(Paths))]
    public void RegisterLoadsAndStoresReachTheDeviceEveryTimeWithoutATlbFill(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, deviceOffset: 2 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu(); // the speculative path runs only with more than one user
        var before = Counters(space);

        cpu.Store<byte>(a + 1, 0x11);
        cpu.Store<ushort>(a + 2, 0x2222);
        cpu.Store<uint>(a + Page + 4, 0x4444_4444);
        cpu.Store<ulong>(a + 8, 0x8888_8888_8888_8888);
        Assert.Equal(0x11, cpu.Load<byte>(a + 1));
        Assert.Equal((ushort)0x2222, cpu.Load<ushort>(a + 2));
        Assert.Equal(0x4444_4444u, cpu.Load<uint>(a + Page + 4));
        Assert.Equal(0x8888_8888_8888_8888ul, cpu.Load<ulong>(a + 8));
        Assert.Equal(0x8888_8888_8888_8888ul, cpu.Load<ulong>(a + 8)); // a second load reaches the device again

        (string, ulong, int, ulong)[] expected =
        [
            ("write", 2 * Page + 1, 1, 0x11), ("write", 2 * Page + 2, 2, 0x2222), ("write", 3 * Page + 4, 4, 0x4444_4444),
            ("write", 2 * Page + 8, 8, 0x8888_8888_8888_8888), ("read", 2 * Page + 1, 1, 0x11), ("read", 2 * Page + 2, 2, 0x2222),
            ("read", 3 * Page + 4, 4, 0x4444_4444), ("read", 2 * Page + 8, 8, 0x8888_8888_8888_8888),
            ("read", 2 * Page + 8, 8, 0x8888_8888_8888_8888),
        ];
        Assert.Equal(expected, device.Calls.ToArray());
        Assert.Equal(0, Delta(before, space, VmCounters.TlbFill));
        // One fault per access, which performs it under the path's lock, also the first access to a page.
        Assert.Equal(9, Delta(before, space, HandledOnPathCounter(path)));
        Assert.Equal(0, space.ResidentPages);
        Assert.False(space.IsResident(a));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void TryFormsAndScopedAccessesReachTheDevice(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a + 16, 5L));
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a + 16, out long loaded));
        Assert.Equal(5L, loaded);
        using (CpuScope scope = cpu.EnterScope())
        {
            scope.Store(a + 24, 6);
            Assert.Equal(6, scope.Load<int>(a + 24));
            Assert.Equal(AccessOutcome.Ok, scope.TryStore(a + 32, (short)7));
            Assert.Equal(AccessOutcome.Ok, scope.TryLoad(a + 32, out short s));
            Assert.Equal(7, s);
            Assert.True(cpu.IsInReadSection, "the scope keeps its section after a device access");
        }
        Assert.Equal(6, device.CallCount);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void BulkCopiesFillsAndValuesAcrossPagesUseTheSpanForm(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        byte[] data = Enumerable.Range(0, 6000).Select(i => (byte)i).ToArray();

        cpu.Write(a + 100, data);
        var back = new byte[data.Length];
        cpu.Read(a + 100, back);
        Assert.Equal(data, back);
        Assert.Equal(
            [("write-span", 100ul, 3996, 0ul), ("write-span", Page, 2004, 0ul), ("read-span", 100ul, 3996, 0ul), ("read-span", Page, 2004, 0ul)],
            device.Calls.ToArray());

        device.Calls.Clear();
        cpu.Store(a + Page - 4, 0x0102_0304_0506_0708ul); // crosses into the next page: two span pieces
        Assert.Equal(0x0102_0304_0506_0708ul, cpu.Load<ulong>(a + Page - 4));
        Assert.Equal(
            [("write-span", Page - 4, 4, 0ul), ("write-span", Page, 4, 0ul), ("read-span", Page - 4, 4, 0ul), ("read-span", Page, 4, 0ul)],
            device.Calls.ToArray());

        device.Calls.Clear();
        cpu.Fill(a + 2 * Page - 10, 20, 0xAB);
        Assert.Equal(Enumerable.Repeat((byte)0xAB, 20), device.Snapshot((int)(2 * Page - 10), 20));
        Assert.Equal([("write-span", 2 * Page - 10, 10, 0ul), ("write-span", 2 * Page, 10, 0ul)], device.Calls.ToArray());
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ProtectionsApplyAsForMemoryAndTheDeviceIsNotCalledOnARefusal(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, pages: 2, protection: Protection.Read);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a, 1));
        var thrown = Assert.Throws<SegmentationFaultException>(() => cpu.Store(a + 8, 1L));
        Assert.Equal(2, thrown.SignalCode);
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a, out int _));
        space.Protect(a, Page, Protection.None);
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryLoad(a, out int _));
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a + Page, out int _));
        space.Protect(a, 2 * Page, Protection.ReadWrite);
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a, 9));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryFetch(a, out int _));
        Assert.Equal(["read", "read", "write"], device.Calls.Select(c => c.Kind));
        space.Protect(a, Page, Protection.Read);
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(a, out int _)); // the Cpu now knows the page as a device read
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryFetchAdd(a, 1u, out _)); // the access check still comes first
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AtomicsAndSpansOnADeviceAreBusErrors(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();

        Assert.Equal(AccessOutcome.BusError, cpu.TryFetchAdd(a, 1u, out _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryCompareExchange(a, 1, 0, out int _));
        var thrown = Assert.Throws<SegmentationFaultException>(() => cpu.Exchange(a + 8, 1ul));
        Assert.Equal(AccessOutcome.BusError, thrown.Outcome);
        using (CpuScope scope = cpu.EnterScope())
        {
            Assert.Equal(AccessOutcome.BusError, scope.TryGetSpan(a, 8, out Span<byte> span));
            Assert.True(span.IsEmpty);
            Assert.Equal(AccessOutcome.BusError, scope.TryGetReadOnlySpan(a, 8, AccessKind.Read, out _));
        }
        Assert.Empty(device.Calls);
        // The next plain access is not taken for a device access by what the refusals left behind.
        ulong memory = MapFixed(space, Base + 0x100_0000, Page);
        cpu.Store(memory, 3L);
        Assert.Equal(3L, cpu.Load<long>(memory));
        Assert.Empty(device.Calls);
        Assert.True(cpu.IsMapped(a, 4 * Page, AccessKind.Write));
    }

    [Fact]
    public void MapsNameTheDeviceAndSmapsShowTheSpecialFlags()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        ulong a = MapDevice(space, new RecordingDevice(), deviceOffset: 3 * Page);
        MappingInfo info = Assert.Single(space.GetMappings());
        Assert.Equal("/dev/test-mmio", info.Name);
        Assert.Equal(a, info.Start);
        Assert.Contains("/dev/test-mmio", space.GetMaps());
        string smaps = space.GetSmaps();
        string flags = smaps.Split('\n').Single(l => l.StartsWith("VmFlags:", StringComparison.Ordinal));
        string[] tokens = flags.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Subset(tokens.ToHashSet(), new HashSet<string> { "sh", "pf", "io", "de", "dd" });
        Assert.DoesNotContain("lo", tokens);
    }

    [Fact]
    public void BadArgumentsAreRefusedWithLinuxErrnoAndChangeNothing()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        var device = new RecordingDevice();
        Assert.Equal(Errno.EINVAL, space.TryMapDevice(Base, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, device, "d", 0, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapDevice(Base, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "d", 100, out _));
        Assert.Equal(Errno.EINVAL, space.TryMapDevice(Base, 0, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "d", 0, out _));
        Assert.Equal(0, space.MapCount);
        Assert.Throws<ArgumentNullException>(() => space.MapDevice(Base, Page, Protection.ReadWrite, MapFlags.Shared, null!, "d"));
    }

    [Fact]
    public void RemapCannotGrowADeviceMappingButMayShrinkIt()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, pages: 4);
        Assert.Equal(Errno.EFAULT, space.TryRemap(a, 4 * Page, 8 * Page, RemapFlags.MayMove, 0, out _));
        Assert.Equal(Errno.None, space.TryRemap(a, 4 * Page, 2 * Page, RemapFlags.None, 0, out ulong shrunk));
        Assert.Equal(a, shrunk);
        Assert.Equal(a + 2 * Page, Assert.Single(space.GetMappings()).End);
    }

    [Fact]
    public void DontNeedAndFreeAreEinvalAndMlockLeavesTheMappingUnlocked()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, pages: 4);
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, 4 * Page, Advice.DontNeed));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, 4 * Page, Advice.Free));
        Assert.Equal(Errno.None, space.Lock(a, 4 * Page));
        Assert.Equal(0, space.LockedPages);
        Assert.Equal(Errno.None, space.LockAll(LockAllFlags.Current | LockAllFlags.Future));
        Assert.Equal(0, space.LockedPages);
        Assert.DoesNotContain(" lo", space.GetSmaps().Split('\n').Single(l => l.StartsWith("VmFlags:", StringComparison.Ordinal)));
        Assert.Empty(device.Calls); // nothing was populated through the device
        Assert.Equal(1, space.MapCount);
        // madvise_vma_behavior refuses DOFORK and DODUMP on VM_IO; MADV_POPULATE_* fails in GUP's check_vma_flags (EFAULT).
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.DoFork));
        Assert.Equal(Errno.EINVAL, space.TryAdvise(a, Page, Advice.DoDump));
        Assert.Equal(Errno.EFAULT, space.TryAdvise(a, Page, Advice.PopulateRead));
        Assert.Empty(device.Calls);
    }

    [Fact]
    public void APartialCopyCountsTheDeviceBytesAndStopsAtTheHoleAfterThem()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, pages: 2);
        using Cpu cpu = space.AttachCpu();
        var buffer = new byte[3 * (int)Page];
        Assert.Equal(new GuestTransfer(2 * (int)Page - 16, AccessOutcome.SegvMapErr, a + 2 * Page), cpu.ReadPartial(a + 16, buffer));
        Assert.Equal(new GuestTransfer((int)Page, AccessOutcome.SegvMapErr, a + 2 * Page), cpu.WritePartial(a + Page, buffer));
        Assert.Equal(new GuestTransfer(10, AccessOutcome.SegvMapErr, a + 2 * Page), cpu.FillPartial(a + 2 * Page - 10, 20, 1));
        Assert.Equal(["read-span", "read-span", "write-span", "write-span"], device.Calls.Select(c => c.Kind));
    }

    [Fact]
    public void ForkGivesTheChildTheSameDevice()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device);
        using Cpu parent = space.AttachCpu();
        parent.Store(a + 8, 41L);
        using AddressSpace child = space.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(41L, childCpu.Load<long>(a + 8));
        childCpu.Store(a + 8, 42L);
        Assert.Equal(42L, parent.Load<long>(a + 8));
        Assert.Equal("/dev/test-mmio", Assert.Single(child.GetMappings()).Name);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void PartialUnmapSplitsTheMappingAndKeepsDeviceOffsets(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        var device = new RecordingDevice();
        ulong a = MapDevice(space, device, pages: 4, deviceOffset: Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        space.Unmap(a + Page, Page);
        Assert.Equal(2, space.MapCount);
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(a + Page, 1));
        cpu.Store(a, 1);
        cpu.Store(a + 3 * Page, 2);
        Assert.Equal([("write", Page, 4, 1ul), ("write", 4 * Page, 4, 2ul)], device.Calls.ToArray());
        // Two device VMAs never merge back (VM_SPECIAL), even when mapped again adjacent with continuous offsets.
        space.MapDevice(a + Page, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "/dev/test-mmio", 2 * Page);
        Assert.Equal(3, space.MapCount);
    }

    [Fact]
    public void ManyCpusAccessTheDeviceConcurrently()
    {
        using AddressSpace space = NewSpace(FaultPath.Speculative);
        var device = new CountingDevice();
        ulong a = space.MapDevice(Base, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, device, "counter");
        const int Threads = 4, Iterations = 2000;
        var cpus = Enumerable.Range(0, Threads).Select(_ => space.AttachCpu()).ToArray();
        var before = Counters(space);
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                cpus[t].Store(a + (ulong)(8 * t), 1L);
            }
        });
        Assert.Equal(Threads * Iterations, device.Writes);
        // One fault an access, the first included (no unarmed fault before the device access).
        Assert.Equal(Threads * Iterations, Delta(before, space, VmCounters.SpeculativePageFault));
        foreach (Cpu cpu in cpus)
        {
            cpu.Dispose();
        }
    }

    private sealed class CountingDevice : IMmioDevice
    {
        private int _writes;

        public int Writes => Volatile.Read(ref _writes);

        public ulong Read(ulong offset, int size) => 0;

        public void Write(ulong offset, int size, ulong value) => Interlocked.Increment(ref _writes);
    }
}
