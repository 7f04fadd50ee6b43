using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Resolutions under the VMA's read lock (<c>uffd_mfill_lock</c>, Linux 6.6+) against writers on another thread: a
/// copy in flight holds no mmap lock (a map elsewhere finishes) while a munmap or an mremap of its range waits for it in
/// <c>vma_start_write</c> and then removes or moves its page; a VMA unmapped between the lockless lookup and the lock is
/// looked up again (ENOENT); a VMA write-locked by an mremap in progress sends the copy to the mmap lock, which waits for
/// the move and then finds the old range gone.
/// </summary>
public sealed class UserFaultResolutionLockRaceTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const ulong Elsewhere = 0x4000_0000;
    private const string Resolver = "resolver";
    private const string Writer = "writer";

    private static byte[] Filled(byte value) => Enumerable.Repeat(value, (int)Page).ToArray();

    private static (AddressSpace Space, UserFaultChannel Channel) NewStage(UserFaultFeatures features = UserFaultFeatures.None)
    {
        var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.VmaLock, PhysicalMemoryBytes = 16 << 20 });
        space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        var channel = new UserFaultChannel(space, features);
        Assert.Equal(Errno.None, channel.Register(Base, 4 * Page, UserFaultModes.Missing));
        return (space, channel);
    }

    [Fact]
    public void ACopyInFlightHoldsNoMmapLockAndAMunmapOfItsRangeWaitsForItThenRemovesThePage()
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage();
        using (space)
        using (channel)
        using (var threads = new ThreadScope())
        using (var filling = new ProbeGate(space, ProbePoint.UserFaultFillBeforePteLock, ThreadRole.Is(Resolver)))
        {
            var copy = threads.Run(Resolver, () => channel.Copy(Base, Filled(7)));
            filling.WaitArrived();

            // mmap_lock is free: a map of another range (a write-lock holder) finishes while the copy is stopped.
            var map = threads.Run(Writer, () => space.TryMap(Elsewhere, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _));
            Assert.Equal(Errno.None, map.Join());

            // The munmap of the copy's range waits in vma_start_write for the copy's VMA read lock.
            var unmap = threads.Run(Writer, () => space.TryUnmap(Base, 4 * Page));
            Thread.Sleep(20);
            Assert.False(unmap.IsDone);
            filling.Release();
            Assert.Equal(Errno.None, copy.Join());
            Assert.Equal(Errno.None, unmap.Join());
            Assert.Equal(0, space.ResidentPages);
            Assert.False(space.IsResident(Base));
        }
    }

    [Fact]
    public void AVmaUnmappedBetweenTheLocklessLookupAndItsLockIsLookedUpAgainAndTheCopyAnswersEnoent()
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage();
        using (space)
        using (channel)
        using (var threads = new ThreadScope())
        using (var looked = new ProbeGate(space, ProbePoint.UserFaultLockAfterLookup, ThreadRole.Is(Resolver)))
        {
            var copy = threads.Run(Resolver, () => channel.Copy(Base + Page, Filled(7)));
            looked.WaitArrived();
            // Nothing is locked yet: the munmap completes, leaving the VMA the copy found detached.
            Assert.Equal(Errno.None, threads.Run(Writer, () => space.TryUnmap(Base, 4 * Page)).Join());
            looked.Release();
            Assert.Equal(Errno.ENOENT, copy.Join());
            Assert.True(looked.Hits >= 1);
            Assert.Equal(0, space.ResidentPages);
        }
    }

    [Fact]
    public void AnMremapOfTheRangeWaitsForACopyInFlightAndMovesItsPage()
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage(UserFaultFeatures.EventRemap);
        ulong target = Base + 64 * Page;
        using (space)
        using (channel)
        using (Cpu cpu = space.AttachCpu())
        using (var threads = new ThreadScope())
        using (var filling = new ProbeGate(space, ProbePoint.UserFaultFillBeforePteLock, ThreadRole.Is(Resolver)))
        {
            var copy = threads.Run(Resolver, () => channel.Copy(Base + Page, Filled(9)));
            filling.WaitArrived();
            var remap = threads.Run(Writer, () =>
                space.TryRemap(Base, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, target, out _));
            Thread.Sleep(20);
            Assert.False(remap.IsDone);
            filling.Release();
            Assert.Equal(Errno.None, copy.Join());
            Assert.Equal(Errno.None, remap.Join());

            Assert.True(channel.TryRead(out UserFaultEvent moved));
            Assert.Equal((UserFaultEventKind.Remap, Base, target), (moved.Kind, moved.Address, moved.To));
            Assert.Equal(0x0909_0909_0909_0909L, cpu.Load<long>(target + Page));
            Assert.False(space.IsResident(Base + Page));
            Assert.Equal(1, space.ResidentPages);
        }
    }

    [Fact]
    public void ACopyMeetingAVmaWriteLockedByAMoveFallsBackToTheMmapLockAndFindsTheRangeGone()
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage();
        using (space)
        using (channel)
        using (Cpu cpu = space.AttachCpu())
        using (var threads = new ThreadScope())
        using (var moving = new ProbeGate(space, ProbePoint.RemapMovedBeforeFlush, ThreadRole.Is(Writer)))
        {
            Assert.Equal(Errno.None, channel.ZeroPage(Base, Page, UserFaultResolveFlags.None, out _));
            var remap = threads.Run(Writer, () =>
                space.TryRemap(Base, 4 * Page, 4 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 64 * Page, out _));
            moving.WaitArrived();
            // The source is write-locked by the move under the mmap write lock: the copy waits for the mmap lock.
            var copy = threads.Run(Resolver, () => channel.Copy(Base + 2 * Page, Filled(5)));
            Thread.Sleep(20);
            Assert.False(copy.IsDone);
            moving.Release();
            Assert.Equal(Errno.None, remap.Join());
            Assert.Equal(Errno.ENOENT, copy.Join());
            Assert.False(space.IsResident(Base + 2 * Page));
        }
    }

    [Fact]
    public void ASecondResolutionWhileTheFirstHoldsTheLookupContextTakesTheMmapLock()
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage();
        using (space)
        using (channel)
        using (var threads = new ThreadScope())
        using (var filling = new ProbeGate(space, ProbePoint.UserFaultFillBeforePteLock, ThreadRole.Is(Resolver)))
        {
            var first = threads.Run(Resolver, () => channel.Copy(Base, Filled(1)));
            filling.WaitArrived();
            // The second copy takes the mmap read lock (the pre-6.6 way) and finishes beside the first.
            Assert.Equal(Errno.None, threads.Run("second", () => channel.Copy(Base + Page, Filled(2))).Join());
            filling.Release();
            Assert.Equal(Errno.None, first.Join());
            Assert.Equal(2, space.ResidentPages);
        }
    }
}
