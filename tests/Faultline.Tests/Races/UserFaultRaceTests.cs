using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// User faults against writers and each other, staged with probe gates on each fault path: a fault asleep on its
/// channel holds neither the mmap lock nor a VMA lock (writers of the same VMA finish meanwhile); a resolution racing
/// munmap fails with ENOENT or maps a page the munmap then removes, and the woken fault gets SIGSEGV either way, as on
/// Linux; one resolution wakes every Cpu blocked on the page; an unanswered fault ends with the channel's close (then
/// handled as unregistered) or its timeout (SIGBUS); a fork while a parent fault sleeps hands the child a channel of
/// its own.
/// </summary>
public sealed class UserFaultRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const string Faulter = "faulter";
    private const string Resolver = "resolver";
    private const string Writer = "writer";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path) => new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    private static byte[] Filled(byte value) => Enumerable.Repeat(value, (int)Page).ToArray();

    // An address space with `pages` private pages at Base registered for missing faults, the faulting Cpu and a second
    // attached Cpu (so grace periods are not skipped as for a lone Cpu).
    private sealed class Stage : IDisposable
    {
        private readonly AddressSpace _space;
        private readonly Cpu _cpu;
        private readonly Cpu _other;
        private readonly UserFaultChannel _channel;

        public Stage(FaultPath path, ulong pages)
        {
            _space = NewSpace(path);
            _space.Map(Base, pages * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            _cpu = _space.AttachCpu();
            _other = _space.AttachCpu();
            _channel = new UserFaultChannel(_space);
            Assert.Equal(Errno.None, _channel.Register(Base, pages * Page, UserFaultModes.Missing));
        }

        public void Deconstruct(out AddressSpace space, out ulong start, out Cpu cpu, out UserFaultChannel channel) =>
            (space, start, cpu, channel) = (_space, Base, _cpu, _channel);

        public void Dispose()
        {
            _channel.Dispose();
            _other.Dispose();
            _cpu.Dispose();
            _space.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ABlockedFaultHoldsNoLockSoWritersOfItsVmaFinish(FaultPath path)
    {
        using var stage = new Stage(path, pages: 4);
        (AddressSpace space, ulong a, Cpu cpu, UserFaultChannel channel) = stage;

        using var threads = new ThreadScope();
        using var blocked = new ProbeGate(space, ProbePoint.UserFaultBlocked, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => (cpu.TryLoad(a, out long value), value));
        blocked.WaitArrived();
        blocked.Release();
        ThreadRole.WaitUntil(() => channel.WaitingFaults == 1, "the fault sleeps");

        // mprotect of the faulting VMA needs the mmap write lock and the VMA's write lock (vma_start_write waits for
        // readers): both are free while the fault sleeps.
        var protect = threads.Run(Writer, () => space.TryProtect(a + 2 * Page, Page, Protection.Read));
        Assert.Equal(Errno.None, protect.Join());
        Assert.Equal(3, space.MapCount);
        Assert.False(fault.IsDone);

        Assert.Equal(Errno.None, channel.Copy(a, Filled(0x44)));
        Assert.Equal((AccessOutcome.Ok, 0x4444_4444_4444_4444L), fault.Join());
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void ACopyAfterMunmapAnswersEnoentAndTheWokenFaultGetsSigsegv(FaultPath path)
    {
        using var stage = new Stage(path, pages: 2);
        (AddressSpace space, ulong a, Cpu cpu, UserFaultChannel channel) = stage;

        using var threads = new ThreadScope();
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + Page, 1L));
        UserFaultEvent message = channel.Read();
        Assert.Equal(a + Page, message.Address);
        space.Unmap(a, 2 * Page);
        // The kernel's mfill finds no VMA (ENOENT) and wakes nobody; the manager wakes the fault, which retries and
        // finds the address unmapped.
        Assert.Equal(Errno.ENOENT, channel.Copy(message.Address, Filled(1)));
        Assert.False(fault.IsDone);
        Assert.Equal(Errno.None, channel.Wake(message.Address, Page));
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AMunmapWaitingForACopyInFlightRemovesItsPageBeforeTheWokenFaultRetries(FaultPath path)
    {
        using var stage = new Stage(path, pages: 2);
        (AddressSpace space, ulong a, Cpu cpu, UserFaultChannel channel) = stage;

        using var threads = new ThreadScope();
        using var woken = new ProbeGate(space, ProbePoint.UserFaultWoken, ThreadRole.Is(Faulter));
        using var filling = new ProbeGate(space, ProbePoint.UserFaultFillBeforePteLock, ThreadRole.Is(Resolver));
        var fault = threads.Run(Faulter, () => cpu.TryLoad(a, out long _));
        UserFaultEvent message = channel.Read();

        // The copy holds the VMA read lock with its page filled; the munmap waits for it in vma_start_write.
        var copy = threads.Run(Resolver, () => channel.Copy(message.Address, Filled(2)));
        filling.WaitArrived();
        var unmap = threads.Run(Writer, () => space.TryUnmap(a, 2 * Page));
        Thread.Sleep(20);
        Assert.False(unmap.IsDone);
        filling.Release();
        Assert.Equal(Errno.None, copy.Join());

        // The copy mapped the page and woke the fault; the munmap removes the page before the fault retries.
        woken.WaitArrived();
        Assert.Equal(Errno.None, unmap.Join());
        woken.Release();
        Assert.Equal(AccessOutcome.SegvMapErr, fault.Join());
        Assert.Equal(0, space.ResidentPages);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void OneResolutionWakesEveryCpuBlockedOnThePage(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu first = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));

        using var threads = new ThreadScope();
        var one = threads.Run(Faulter, () => first.Load<long>(a));
        var two = threads.Run(Faulter, () => second.Load<long>(a + 8));
        ThreadRole.WaitUntil(() => channel.WaitingFaults == 2, "both faults sleep");
        UserFaultEvent m1 = channel.Read(), m2 = channel.Read();
        Assert.Equal((a, a), (m1.Address, m2.Address));
        Assert.NotEqual(m1.CpuId, m2.CpuId);

        Assert.Equal(Errno.None, channel.Copy(a, Filled(3)));
        Assert.Equal(0x0303_0303_0303_0303L, one.Join());
        Assert.Equal(0x0303_0303_0303_0303L, two.Join());
        Assert.Equal(0, channel.WaitingFaults);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AnUnansweredFaultEndsWithTheTimeoutOrTheClose(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        using (var timed = new UserFaultChannel(space, faultTimeout: TimeSpan.FromMilliseconds(30)))
        {
            Assert.Equal(Errno.None, timed.Register(a, Page, UserFaultModes.Missing));
            Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(a, out long _));
        }
        var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a + Page, Page, UserFaultModes.Missing));
        using var threads = new ThreadScope();
        using var woken = new ProbeGate(space, ProbePoint.UserFaultWoken, ThreadRole.Is(Faulter));
        var fault = threads.Run(Faulter, () => cpu.TryStore(a + Page, 5L));
        Assert.Equal(a + Page, channel.Read().Address);
        // userfaultfd_release: the VMA is cleared before the fault wakes, so its retry is an ordinary fault.
        var close = threads.Run(Resolver, () =>
        {
            channel.Dispose();
            return true;
        });
        woken.WaitArrived();
        Assert.True(close.Join());
        Assert.DoesNotContain(" um", space.GetSmaps());
        woken.Release();
        Assert.Equal(AccessOutcome.Ok, fault.Join());
        Assert.Equal(5L, other.Load<long>(a + Page));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AForkWhileAParentFaultSleepsGivesTheChildItsOwnChannel(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a + Page, 9L);
        using var channel = new UserFaultChannel(space, UserFaultFeatures.EventFork);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Missing));

        using var threads = new ThreadScope();
        var fault = threads.Run(Faulter, () => cpu.Load<long>(a));
        Assert.Equal(UserFaultEventKind.PageFault, channel.Read().Kind);
        // dup_mmap needs the parent's mmap write lock: free while the fault sleeps.
        using AddressSpace child = space.Fork();
        UserFaultEvent forked = channel.Read();
        Assert.Equal(UserFaultEventKind.Fork, forked.Kind);
        using UserFaultChannel childChannel = forked.Child!;
        Assert.Same(child, childChannel.AddressSpace);

        using Cpu childCpu = child.AttachCpu();
        using Cpu childOther = child.AttachCpu();
        Assert.Equal(9L, childCpu.Load<long>(a + Page));
        var childFault = threads.Run(Writer, () => childCpu.Load<long>(a));
        UserFaultEvent childMessage = childChannel.Read();
        Assert.Equal(childCpu.Id, childMessage.CpuId);
        // Each side's resolution wakes only its own fault.
        Assert.Equal(Errno.None, childChannel.Copy(a, Filled(6)));
        Assert.Equal(0x0606_0606_0606_0606L, childFault.Join());
        Assert.False(fault.IsDone);
        Assert.Equal(Errno.None, channel.Copy(a, Filled(7)));
        Assert.Equal(0x0707_0707_0707_0707L, fault.Join());
    }
}
