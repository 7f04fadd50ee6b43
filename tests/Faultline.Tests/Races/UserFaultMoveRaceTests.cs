using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// <c>UFFDIO_MOVE</c> against other threads: a move stopped with both VMAs read-locked holds no mmap lock, and an unmap
/// of its source waits for it in <c>vma_start_write</c>; a store that walked to the source entry before the move cleared
/// it holds the move's TLB flush back until it is done, so the stored value moves with the page and no Cpu reaches the
/// frame through the source afterwards.
/// </summary>
public sealed class UserFaultMoveRaceTests
{
    private const ulong Page = 4096;
    private const ulong Src = 0x1000_0000;
    private const ulong Dst = 0x2000_0000;
    private const string Mover = "mover";
    private const string Writer = "writer";

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static (AddressSpace Space, UserFaultChannel Channel) NewStage(FaultPath path)
    {
        var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        space.Map(Src, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(Dst, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(Dst, 4 * Page, UserFaultModes.Missing));
        return (space, channel);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AnUnmapOfTheSourceWaitsForAMoveInFlightWhichHoldsNoMmapLock(FaultPath path)
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage(path);
        using (space)
        using (channel)
        using (Cpu cpu = space.AttachCpu())
        using (var threads = new ThreadScope())
        using (var locked = new ProbeGate(space, ProbePoint.UserFaultMoveBeforePteLocks, ThreadRole.Is(Mover)))
        {
            cpu.Store(Src + Page, 11L);
            var move = threads.Run(Mover, () => channel.Move(Dst, Src + Page, Page));
            locked.WaitArrived();
            Assert.Equal(Errno.None, threads.Run(Writer, () => space.TryMap(0x4000_0000, Page, Protection.Read,
                MapFlags.PrivateAnonymous | MapFlags.Fixed, out _)).Join());
            var unmap = threads.Run(Writer, () => space.TryUnmap(Src, 4 * Page));
            Thread.Sleep(20);
            Assert.False(unmap.IsDone);
            locked.Release();
            Assert.Equal(Errno.None, move.Join());
            Assert.Equal(Errno.None, unmap.Join());
            Assert.Equal(11L, cpu.Load<long>(Dst));
            Assert.Equal(1, space.ResidentPages);
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void AStoreThatWalkedToTheSourceBeforeTheMoveHoldsItsFlushBackAndMovesWithThePage(FaultPath path)
    {
        (AddressSpace space, UserFaultChannel channel) = NewStage(path);
        using (space)
        using (channel)
        using (Cpu owner = space.AttachCpu())
        using (Cpu writer = space.AttachCpu())
        using (var threads = new ThreadScope())
        using (var walked = new ProbeGate(space, ProbePoint.TlbMissWalked, ThreadRole.Is(Writer)))
        {
            owner.Store(Src, 1L);
            // The writer's TLB is empty: its store walks, finds the entry writable and dirty, and stops before storing.
            var store = threads.Run(Writer, () => writer.TryStore(Src, 3L));
            walked.WaitArrived();
            var move = threads.Run(Mover, () => channel.Move(Dst, Src, Page));
            // The move cleared the source entry and waits for the grace period the stopped store holds back.
            Thread.Sleep(20);
            Assert.False(move.IsDone);
            walked.Release();
            Assert.Equal(AccessOutcome.Ok, store.Join());
            Assert.Equal(Errno.None, move.Join());
            Assert.Equal(3L, owner.Load<long>(Dst));
            // Neither Cpu reaches the moved frame at the source any more.
            Assert.Equal(0L, writer.Load<long>(Src));
            Assert.Equal(0L, owner.Load<long>(Src));
            Assert.Equal(3L, writer.Load<long>(Dst));
        }
    }
}
