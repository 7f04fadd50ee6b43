using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// User-fault channels (Linux's userfaultfd): registration with the kernel's errno rules, the round trip of a fault
/// through the channel on each fault path, each resolution, write-protect and minor faults, the ways a blocked fault
/// ends without an answer, and the non-cooperative events.
/// </summary>
public sealed class UserFaultTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static AddressSpace NewSpace(FaultPath path = FaultPath.MmapLock) =>
        new(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });

    private static byte[] Filled(byte value, int pages = 1)
    {
        var bytes = new byte[pages * (int)Page];
        Array.Fill(bytes, value);
        return bytes;
    }

    [Fact]
    public void RegisterFollowsTheKernelsErrnoRules()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong shared = space.Map(Base + 16 * Page, 4 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space);
        using var other = new UserFaultChannel(space);

        Assert.Equal(Errno.EINVAL, channel.Register(a, 4 * Page, UserFaultModes.None));
        Assert.Equal(Errno.EINVAL, channel.Register(a, 4 * Page, (UserFaultModes)8));
        Assert.Equal(Errno.EINVAL, channel.Register(a + 1, Page, UserFaultModes.Missing));
        Assert.Equal(Errno.EINVAL, channel.Register(a, Page + 1, UserFaultModes.Missing));
        Assert.Equal(Errno.EINVAL, channel.Register(a, 0, UserFaultModes.Missing));
        Assert.Equal(Errno.ENOMEM, channel.Register(Base + 64 * Page, Page, UserFaultModes.Missing));
        // Minor faults exist only for shared memory; write-protect only for anonymous memory (no PTE markers).
        Assert.Equal(Errno.EINVAL, channel.Register(a, Page, UserFaultModes.Minor));
        Assert.Equal(Errno.EINVAL, channel.Register(shared, Page, UserFaultModes.WriteProtect));
        // Holes are allowed: the range spans both mappings and the gap between them.
        Assert.Equal(Errno.None, channel.Register(a + Page, 2 * Page, UserFaultModes.Missing));
        Assert.Equal(Errno.EBUSY, other.Register(a, 4 * Page, UserFaultModes.Missing));
        Assert.Equal(Errno.None, other.Register(a + 3 * Page, Page, UserFaultModes.Missing));
        Assert.Contains(" um", space.GetSmaps());
        Assert.Equal(Errno.EINVAL, other.Unregister(a, 2 * Page));
        Assert.Equal(Errno.ENOMEM, channel.Unregister(Base + 64 * Page, Page));
        Assert.Equal(Errno.None, channel.Unregister(a, 3 * Page));
        Assert.Equal(Errno.None, other.Unregister(a, 4 * Page));
        // Unregistered pieces merge back into one VMA.
        Assert.Equal(2, space.MapCount);
        Assert.Throws<MemoryOperationException>(() => new UserFaultChannel(space, (UserFaultFeatures)(1UL << 15)));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AMissingFaultBlocksUntilTheHandlerCopiesThePage(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        other.Store(a + 3 * Page, 7L);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));

        var faulter = ThreadRole.Run("faulter", () => cpu.Load<long>(a + Page + 16));
        UserFaultEvent fault = channel.Read();
        Assert.Equal(UserFaultEventKind.PageFault, fault.Kind);
        Assert.Equal(a + Page, fault.Address);
        Assert.Equal(UserFaultModes.Missing, fault.Reason);
        Assert.Equal(AccessKind.Read, fault.Access);
        Assert.Equal(cpu.Id, fault.CpuId);
        Assert.Equal(faulter.ManagedThreadId, fault.ThreadId);
        Assert.False(faulter.IsDone);

        Assert.Equal(Errno.None, channel.Copy(a + Page, Filled(0x11)));
        Assert.Equal(0x1111_1111_1111_1111L, faulter.Join());
        // A page already there is not a fault; a second copy over it is EEXIST.
        Assert.Equal(7L, cpu.Load<long>(a + 3 * Page));
        Assert.Equal(Errno.EEXIST, channel.Copy(a + Page, Filled(0x22)));
        Assert.Equal(0x1111_1111_1111_1111L, cpu.Load<long>(a + Page));
        // The copied page is an ordinary anonymous page: writable, counted.
        cpu.Store(a + Page, 5L);
        Assert.Equal(2, space.ResidentPages);

        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        if (path == FaultPath.Speculative)
        {
            Assert.True(counters[VmCounters.SpeculativeVmaNotSupported] >= 1);
        }
        if (path == FaultPath.VmaLock)
        {
            Assert.True(counters[VmCounters.VmaLockRetry] >= 1);
        }
    }

    [Fact]
    public void CopyAnswersEnoentOutsideARegisteredMappingAndEinvalForBadInput()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong plain = space.Map(Base + 8 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));

        Assert.Equal(Errno.ENOENT, channel.Copy(plain, Filled(1)));
        Assert.Equal(Errno.ENOENT, channel.Copy(Base + 32 * Page, Filled(1)));
        Assert.Equal(Errno.ENOENT, channel.Copy(a + 3 * Page, Filled(1, 2)));
        Assert.Equal(Errno.EINVAL, channel.Copy(a, new byte[100]));
        Assert.Equal(Errno.EINVAL, channel.Copy(a + 1, Filled(1)));
        Assert.Equal(Errno.EINVAL, channel.Copy(a, Filled(1), UserFaultResolveFlags.WriteProtect));
        Assert.Equal(Errno.EINVAL, channel.ZeroPage(a, Page, UserFaultResolveFlags.WriteProtect, out _));
        Assert.Equal(Errno.EINVAL, channel.Continue(a, Page, UserFaultResolveFlags.None, out _));
        Assert.Equal(0, space.ResidentPages);

        // A copy whose second page exists maps the first and answers EAGAIN with the count.
        Assert.Equal(Errno.None, channel.Copy(a + Page, Filled(2)));
        Assert.Equal(Errno.EAGAIN, channel.Copy(a, Filled(3, 2), UserFaultResolveFlags.None, out ulong copied));
        Assert.Equal(Page, copied);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(0x0303_0303_0303_0303L, cpu.Load<long>(a));
        Assert.Equal(0x0202_0202_0202_0202L, cpu.Load<long>(a + Page));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void ZeroPageResolvesWithZeros(bool zeroPageOnRead)
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = zeroPageOnRead });
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Missing));
        var faulter = ThreadRole.Run("faulter", () => cpu.Load<long>(a));
        Assert.Equal(a, channel.Read().Address);
        Assert.Equal(Errno.None, channel.ZeroPage(a, 2 * Page, UserFaultResolveFlags.None, out ulong zeroed));
        Assert.Equal(2 * Page, zeroed);
        Assert.Equal(0L, faulter.Join());
        // A write after the zero page copies it (or reuses the private zeroed page): no user fault.
        cpu.Store(a + Page, 9L);
        Assert.Equal(9L, cpu.Load<long>(a + Page));
        Assert.Equal(0, channel.WaitingFaults);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AWriteToAWriteProtectedPageBlocksUntilTheProtectionIsLifted(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a, 1L);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.WriteProtect));
        Assert.Equal(Errno.None, channel.WriteProtect(a, 2 * Page, protect: true));
        Assert.Contains(" uw", space.GetSmaps());
        // mprotect keeps the protection (pte_modify keeps _PAGE_UFFD_WP; can_change_pte_writable refuses).
        space.Protect(a, 2 * Page, Protection.Read);
        space.Protect(a, 2 * Page, Protection.ReadWrite);

        Assert.Equal(1L, cpu.Load<long>(a));
        var writer = ThreadRole.Run("writer", () => cpu.TryStore(a, 2L));
        UserFaultEvent fault = channel.Read();
        Assert.Equal(UserFaultModes.WriteProtect, fault.Reason);
        Assert.Equal(AccessKind.Write, fault.Access);
        Assert.Equal(a, fault.Address);
        Assert.Equal(1L, other.Load<long>(a));
        Assert.False(writer.IsDone);
        Assert.Equal(Errno.None, channel.WriteProtect(a, Page, protect: false));
        Assert.Equal(AccessOutcome.Ok, writer.Join());
        Assert.Equal(2L, other.Load<long>(a));

        // A page never populated is not write-protected (no PTE markers): the write just faults it in.
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a + Page, 3L));
        Assert.Equal(Errno.ENOENT, channel.WriteProtect(Base + 64 * Page, Page, protect: true));
        Assert.Equal(Errno.EINVAL, channel.WriteProtect(a, Page, protect: true, UserFaultResolveFlags.DontWake));
    }

    [Fact]
    public void WriteProtectionMovesWithMremapAndPassesToAForkedChildWithTheFeatures()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        cpu.Store(a + Page, 2L);
        using var channel = new UserFaultChannel(space, UserFaultFeatures.EventFork | UserFaultFeatures.EventRemap);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.WriteProtect));
        Assert.Equal(Errno.None, channel.WriteProtect(a, 2 * Page, protect: true));

        // mremap moves the entries with their uffd-wp bit, and the moved range stays registered.
        ulong moved = space.Remap(a, 2 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 32 * Page);
        Assert.Equal(UserFaultEventKind.Remap, channel.Read().Kind);
        var writer = ThreadRole.Run("writer", () => cpu.TryStore(moved, 3L));
        UserFaultEvent fault = channel.Read();
        Assert.Equal((UserFaultModes.WriteProtect, moved), (fault.Reason, fault.Address));
        Assert.Equal(Errno.None, channel.WriteProtect(moved, Page, protect: false));
        Assert.Equal(AccessOutcome.Ok, writer.Join());

        // fork copies the entries with the bit (copy_present_pte keeps it where the child's VMA is registered).
        using AddressSpace child = space.Fork();
        UserFaultEvent forked = channel.Read();
        using UserFaultChannel childChannel = forked.Child!;
        using Cpu childCpu = child.AttachCpu();
        var childWriter = ThreadRole.Run("writer", () => childCpu.TryStore(moved + Page, 4L));
        UserFaultEvent childFault = childChannel.Read();
        Assert.Equal((UserFaultModes.WriteProtect, moved + Page), (childFault.Reason, childFault.Address));
        Assert.Equal(Errno.None, childChannel.WriteProtect(moved + Page, Page, protect: false));
        Assert.Equal(AccessOutcome.Ok, childWriter.Join());
        // The child's write copied the shared page: the parent's stays write-protected and unchanged.
        Assert.Equal(2L, cpu.Load<long>(moved + Page));
        Assert.Equal(4L, childCpu.Load<long>(moved + Page));
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void UnregisterReleasesWriteProtectionAndWakesTheWriter()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.WriteProtect | UserFaultModes.Missing));
        Assert.Equal(Errno.None, channel.WriteProtect(a, Page, protect: true));
        var writer = ThreadRole.Run("writer", () => cpu.TryStore(a, 2L));
        Assert.Equal(UserFaultModes.WriteProtect, channel.Read().Reason);
        Assert.Equal(Errno.None, channel.Unregister(a, Page));
        Assert.Equal(AccessOutcome.Ok, writer.Join());
        Assert.Equal(2L, cpu.Load<long>(a));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void SharedMemoryMinorFaultsContinueWithTheCachedPageAndMissingOnesTakeACopy(FaultPath path)
    {
        using AddressSpace space = NewSpace(path);
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu();
        cpu.Store(a, 42L);
        // MADV_DONTNEED drops the PTE; the page stays in the object: the next touch is a minor fault.
        space.Advise(a, Page, Advice.DontNeed);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Minor | UserFaultModes.Missing));

        var reader = ThreadRole.Run("reader", () => cpu.Load<long>(a + 8));
        UserFaultEvent minor = channel.Read();
        Assert.Equal(UserFaultModes.Minor, minor.Reason);
        Assert.Equal(Errno.None, channel.Continue(a, Page, UserFaultResolveFlags.None, out ulong mapped));
        Assert.Equal(Page, mapped);
        Assert.Equal(0L, reader.Join());
        Assert.Equal(42L, cpu.Load<long>(a));
        Assert.Equal(Errno.EEXIST, channel.Continue(a, Page, UserFaultResolveFlags.None, out _));
        // No page cached at the second offset: CONTINUE cannot map it, a missing fault takes a copy.
        Assert.Equal(Errno.EFAULT, channel.Continue(a + Page, Page, UserFaultResolveFlags.None, out _));
        var writer = ThreadRole.Run("writer", () => cpu.TryStore(a + Page + 8, 6L));
        UserFaultEvent missing = channel.Read();
        Assert.Equal(UserFaultModes.Missing, missing.Reason);
        Assert.Equal(Errno.None, channel.Copy(a + Page, Filled(0x33)));
        Assert.Equal(AccessOutcome.Ok, writer.Join());
        Assert.Equal(0x3333_3333_3333_3333L, other.Load<long>(a + Page));
        Assert.Equal(6L, other.Load<long>(a + Page + 8));
    }

    [Fact]
    public void ClosingTheChannelWakesTheFaultWhichIsThenHandledAsUnregistered()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        var faulter = ThreadRole.Run("faulter", () => cpu.TryStore(a, 4L));
        ThreadRole.WaitUntil(() => channel.WaitingFaults == 1, "the fault blocks");
        Assert.Equal(UserFaultEventKind.PageFault, channel.Read().Kind);
        var reader = ThreadRole.Run("reader", () => Record.Exception(() => channel.Read()));
        channel.Dispose();
        Assert.Equal(AccessOutcome.Ok, faulter.Join());
        Assert.Equal(4L, cpu.Load<long>(a));
        Assert.IsType<ObjectDisposedException>(reader.Join());
        Assert.DoesNotContain(" um", space.GetSmaps());
        Assert.Throws<ObjectDisposedException>(() => channel.Register(a, Page, UserFaultModes.Missing));
    }

    [Fact]
    public void AFaultTimeoutEndsAnUnansweredFaultWithSigbus()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space, faultTimeout: TimeSpan.FromMilliseconds(50));
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        Assert.Equal(AccessOutcome.BusError, cpu.TryLoad(a, out long _));
        Assert.Equal(0, channel.WaitingFaults);
        // The message stays readable but its fault is gone: a late copy still fills the page.
        Assert.True(channel.TryRead(out UserFaultEvent stale) is var read && (!read || stale.Address == a));
        Assert.Equal(Errno.None, channel.Copy(a, Filled(1)));
        Assert.Equal(0x0101_0101_0101_0101L, cpu.Load<long>(a));
    }

    [Fact]
    public void TheSigbusFeatureFailsFaultsAtOnce()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space, UserFaultFeatures.SigBus);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        Assert.Equal(AccessOutcome.BusError, cpu.TryStore(a, 1L));
        Assert.False(channel.TryRead(out _));
        Assert.Equal(Errno.None, channel.ZeroPage(a, Page, UserFaultResolveFlags.None, out _));
        Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a, 1L));
    }

    [Fact]
    public void DisposingTheAddressSpaceWakesABlockedFault()
    {
        AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Cpu cpu = space.AttachCpu();
        var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        var faulter = ThreadRole.Run("faulter", () => Record.Exception(() => cpu.Load<long>(a)));
        ThreadRole.WaitUntil(() => channel.WaitingFaults == 1, "the fault blocks");
        space.Dispose();
        Assert.IsType<ObjectDisposedException>(faulter.Join());
        Assert.Throws<ObjectDisposedException>(() => channel.Copy(a, Filled(1)));
        channel.Dispose();
        cpu.Dispose();
    }

    [Fact]
    public async Task ReadAsyncDeliversAndCancels()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        using (var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(20)))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await channel.ReadAsync(cancel.Token));
        }
        using (var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(20)))
        {
            Assert.ThrowsAny<OperationCanceledException>(() => channel.Read(cancel.Token));
        }
        ValueTask<UserFaultEvent> pending = channel.ReadAsync();
        var faulter = ThreadRole.Run("faulter", () => cpu.Load<long>(a));
        UserFaultEvent fault = await pending;
        Assert.Equal(a, fault.Address);
        Assert.Equal(Errno.None, channel.Copy(a, Filled(5)));
        Assert.Equal(0x0505_0505_0505_0505L, faulter.Join());
    }

    [Fact]
    public void TheCallbackModeResolvesFaultsOnItsThread()
    {
        using AddressSpace space = NewSpace(FaultPath.VmaLock);
        ulong a = space.Map(Base, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 64 * Page, UserFaultModes.Missing));
        byte[] page = new byte[Page];
        using var callback = new UserFaultCallback(channel, e =>
        {
            BitConverter.TryWriteBytes(page, (long)e.Address);
            Errno copied = channel.Copy(e.Address, page);
            Assert.Equal(Errno.None, copied);
        });
        for (ulong i = 0; i < 64; i++)
        {
            Assert.Equal((long)(a + i * Page), cpu.Load<long>(a + i * Page));
        }
        Assert.Equal(64, callback.Handled);
        Assert.Null(callback.Error);
    }

    [Fact]
    public void ForkWithTheForkFeatureHandsTheChildsRegistrationToANewChannel()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 1L);
        using var channel = new UserFaultChannel(space, UserFaultFeatures.EventFork);
        using var plain = new UserFaultChannel(space);
        ulong b = space.Map(Base + 8 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Missing));
        Assert.Equal(Errno.None, plain.Register(b, Page, UserFaultModes.Missing));

        using AddressSpace child = space.Fork();
        UserFaultEvent forked = channel.Read();
        Assert.Equal(UserFaultEventKind.Fork, forked.Kind);
        using UserFaultChannel childChannel = forked.Child!;
        Assert.Same(child, childChannel.AddressSpace);
        Assert.False(plain.TryRead(out _));
        // Without the feature the child's VMA is ordinary: a fault there fills a zero page.
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(0L, childCpu.Load<long>(b));
        Assert.Equal(1L, childCpu.Load<long>(a));
        var faulter = ThreadRole.Run("faulter", () => childCpu.Load<long>(a + Page));
        UserFaultEvent fault = childChannel.Read();
        Assert.Equal(a + Page, fault.Address);
        Assert.False(channel.TryRead(out _));
        Assert.Equal(Errno.None, childChannel.Copy(a + Page, Filled(8)));
        Assert.Equal(0x0808_0808_0808_0808L, faulter.Join());
        Assert.False(space.IsResident(a + Page));
    }

    [Fact]
    public void ClosingTheParentsChannelBeforeReadingTheForkEventClosesTheChilds()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        var channel = new UserFaultChannel(space, UserFaultFeatures.EventFork);
        Assert.Equal(Errno.None, channel.Register(a, Page, UserFaultModes.Missing));
        using AddressSpace child = space.Fork();
        channel.Dispose();
        using Cpu childCpu = child.AttachCpu();
        // The child's range is ordinary: the read maps a zero page instead of waiting for a channel nobody reads.
        Assert.Equal(0L, childCpu.Load<long>(a));
        Assert.DoesNotContain(" um", child.GetSmaps());
    }

    [Fact]
    public void RemapRemoveAndUnmapEventsDescribeTheChange()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space, UserFaultFeatures.EventRemap | UserFaultFeatures.EventRemove | UserFaultFeatures.EventUnmap);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));
        Assert.Equal(Errno.None, channel.Copy(a, Filled(1)));

        space.Advise(a, Page, Advice.DontNeed);
        UserFaultEvent removed = channel.Read();
        Assert.Equal((UserFaultEventKind.Remove, a, a + Page), (removed.Kind, removed.Address, removed.End));

        ulong moved = space.Remap(a, 2 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 32 * Page);
        // Until the event is read, resolutions answer EAGAIN (mmap_changing).
        Assert.Equal(Errno.EAGAIN, channel.Copy(moved, Filled(2)));
        UserFaultEvent remapped = channel.Read();
        Assert.Equal((UserFaultEventKind.Remap, a, moved, 2 * Page), (remapped.Kind, remapped.Address, remapped.To, remapped.Length));
        // The source's unmap is reported after the move (unmap_source_vma's uf_unmap list).
        UserFaultEvent sourceGone = channel.Read();
        Assert.Equal((UserFaultEventKind.Unmap, a, a + 2 * Page), (sourceGone.Kind, sourceGone.Address, sourceGone.End));
        // The moved range stays registered with the channel.
        Assert.Equal(Errno.None, channel.Copy(moved, Filled(2)));
        Assert.Equal(0x0202_0202_0202_0202L, cpu.Load<long>(moved));

        space.Unmap(a + 2 * Page, 2 * Page);
        UserFaultEvent unmapped = channel.Read();
        Assert.Equal((UserFaultEventKind.Unmap, a + 2 * Page, a + 4 * Page), (unmapped.Kind, unmapped.Address, unmapped.End));
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void RemapWithoutTheFeatureDropsTheRegistration()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Missing));
        ulong moved = space.Remap(a, 2 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 32 * Page);
        Assert.Equal(0L, cpu.Load<long>(moved));
        Assert.Equal(Errno.ENOENT, channel.Copy(moved + Page, Filled(1)));
        Assert.False(channel.TryRead(out _));
    }
}
