using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// <c>UFFDIO_MOVE</c>: pages move between VMAs by their entries (same frame, new owner in the reverse map), the source
/// becomes a hole and no Cpu keeps reaching it there; errno as Linux 6.18 answers each case (EEXIST, ENOENT and
/// ALLOW_SRC_HOLES, EAGAIN with the bytes moved, EBUSY for a page shared with a forked child or pinned, EINVAL for
/// unaligned or mismatched ranges, an unregistered destination, shared memory or differing protections).
/// </summary>
public sealed class UserFaultMoveTests
{
    private const ulong Page = 4096;
    private const ulong Src = 0x1000_0000;
    private const ulong Dst = 0x2000_0000;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private sealed class Stage : IDisposable
    {
        public Stage(FaultPath path = FaultPath.VmaLock, UserFaultFeatures features = UserFaultFeatures.Move)
        {
            Space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
            Space.Map(Src, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            Space.Map(Dst, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            Cpu = Space.AttachCpu();
            Channel = new UserFaultChannel(Space, features);
            Assert.Equal(Errno.None, Channel.Register(Dst, 16 * Page, UserFaultModes.Missing));
        }

        public AddressSpace Space { get; }
        public Cpu Cpu { get; }
        public UserFaultChannel Channel { get; }

        public void Dispose()
        {
            Channel.Dispose();
            Cpu.Dispose();
            Space.Dispose();
        }
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void APageMovesWithItsFrameAndTheSourceBecomesAHole(FaultPath path)
    {
        using var stage = new Stage(path);
        (AddressSpace space, Cpu cpu, UserFaultChannel channel) = (stage.Space, stage.Cpu, stage.Channel);
        cpu.Store(Src, 0x1122_3344_5566_7788L);

        Assert.Equal(Errno.None, channel.Move(Dst, Src, Page, UserFaultMoveFlags.None, out ulong moved));
        Assert.Equal(Page, moved);
        Assert.Equal(0x1122_3344_5566_7788L, cpu.Load<long>(Dst));
        // The frame is found at the destination by the reverse map, and only there.
        Assert.Equal(Dst, Assert.Single(space.GetPageMappings(Dst)).Address);
        Assert.Empty(space.GetPageMappings(Src));
        Assert.Equal(1, space.ResidentPages);
        // The Cpu that cached the source's translation reaches a fresh zero page there now.
        Assert.Equal(0L, cpu.Load<long>(Src));
        cpu.Store(Dst, 1L);
        Assert.Equal(1L, cpu.Load<long>(Dst));
    }

    [Fact]
    public void ErrnoFollowsLinux()
    {
        using var stage = new Stage();
        (AddressSpace space, Cpu cpu, UserFaultChannel channel) = (stage.Space, stage.Cpu, stage.Channel);
        for (ulong i = 0; i < 4; i++)
        {
            cpu.Store(Src + i * Page, (long)i + 1);
        }
        Assert.Equal(Errno.None, channel.Move(Dst, Src, Page));
        // A populated destination, a source hole with and without ALLOW_SRC_HOLES.
        Assert.Equal(Errno.EEXIST, channel.Move(Dst, Src + Page, Page, UserFaultMoveFlags.None, out ulong moved));
        Assert.Equal(0UL, moved);
        Assert.Equal(Errno.ENOENT, channel.Move(Dst + 8 * Page, Src + 8 * Page, Page));
        Assert.Equal(Errno.None, channel.Move(Dst + 8 * Page, Src + 8 * Page, Page, UserFaultMoveFlags.AllowSourceHoles, out moved));
        Assert.Equal(Page, moved);
        // Two pages, then a page followed by a hole: partial, EAGAIN with the bytes done.
        Assert.Equal(Errno.None, channel.Move(Dst + 9 * Page, Src + Page, 2 * Page));
        Assert.Equal(Errno.EAGAIN, channel.Move(Dst + 11 * Page, Src + 3 * Page, 2 * Page, UserFaultMoveFlags.None, out moved));
        Assert.Equal(Page, moved);
        // Bad input, mismatched ranges, an unregistered destination, holes in the address space.
        Assert.Equal(Errno.EINVAL, channel.Move(Dst + 1, Src, Page));
        Assert.Equal(Errno.EINVAL, channel.Move(Dst, Src, 0));
        Assert.Equal(Errno.EINVAL, channel.Move(Dst + 12 * Page, Src + 12 * Page, Page, (UserFaultMoveFlags)4));
        Assert.Equal(Errno.EINVAL, channel.Move(Src, Dst, Page));
        Assert.Equal(Errno.EINVAL, channel.Move(Dst + 12 * Page, Src + 12 * Page, 8 * Page));
        Assert.Equal(Errno.ENOENT, channel.Move(Dst + 13 * Page, 0x3000_0000, Page));
        Assert.Equal(Errno.ENOENT, channel.Move(0x3000_0000, Src, Page));
        // Source and destination in one VMA may overlap: each page moves in turn.
        Assert.Equal(Errno.None, channel.Move(Dst + 5 * Page, Dst + 9 * Page, Page));
        Assert.Equal(Errno.None, channel.Move(Dst + 6 * Page, Dst + 5 * Page, 2 * Page, UserFaultMoveFlags.AllowSourceHoles, out moved));
        Assert.Equal(2 * Page, moved);
        Assert.Equal(2L, cpu.Load<long>(Dst + 7 * Page));
        Assert.Equal(Errno.EEXIST, channel.Move(Dst + 7 * Page, Dst + 10 * Page, Page));

        // Differing protections, shared memory.
        space.Map(0x3000_0000, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);
        Assert.Equal(Errno.EINVAL, channel.Move(Dst + 15 * Page, 0x3000_0000, Page));
        space.Map(0x3100_0000, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        cpu.Store(0x3100_0000, 1L);
        Assert.Equal(Errno.EINVAL, channel.Move(Dst + 15 * Page, 0x3100_0000, Page));
        Assert.Equal(Errno.EINVAL, channel.Move(0x3100_0000, Src + 4 * Page, Page));
    }

    [Fact]
    public void APageSharedWithAForkedChildOrPinnedIsBusy()
    {
        using var stage = new Stage();
        (AddressSpace space, Cpu cpu, UserFaultChannel channel) = (stage.Space, stage.Cpu, stage.Channel);
        cpu.Store(Src, 5L);
        cpu.Store(Src + Page, 6L);
        using (AddressSpace child = space.Fork())
        {
            Assert.Equal(Errno.EBUSY, channel.Move(Dst, Src, Page));
            // The parent's write copies the page: its copy is exclusive and moves.
            cpu.Store(Src, 7L);
            Assert.Equal(Errno.None, channel.Move(Dst, Src, Page));
            using Cpu childCpu = child.AttachCpu();
            Assert.Equal(5L, childCpu.Load<long>(Src));
        }
        using (PinnedPages pinned = space.Pin(Src + Page, Page, write: true))
        {
            Assert.Equal(Errno.EBUSY, channel.Move(Dst + Page, Src + Page, Page));
        }
        Assert.Equal(Errno.None, channel.Move(Dst + Page, Src + Page, Page));
        Assert.Equal((7L, 6L), (cpu.Load<long>(Dst), cpu.Load<long>(Dst + Page)));
    }

    [Fact]
    public void AMoveWakesTheFaultWaitingOnTheDestination()
    {
        using var stage = new Stage();
        (AddressSpace space, Cpu cpu, UserFaultChannel channel) = (stage.Space, stage.Cpu, stage.Channel);
        using Cpu other = space.AttachCpu();
        other.Store(Src + 3 * Page, 42L);
        using var threads = new ThreadScope();
        var fault = threads.Run("faulter", () => cpu.Load<long>(Dst + 2 * Page));
        UserFaultEvent e = channel.Read();
        Assert.Equal(Dst + 2 * Page, e.Address);
        Assert.Equal(Errno.None, channel.Move(e.Address, Src + 3 * Page, Page));
        Assert.Equal(42L, fault.Join());
    }

    [Fact]
    public void AMoveAnswersEagainWhileAnEventIsUnread()
    {
        using var stage = new Stage(features: UserFaultFeatures.EventUnmap);
        (AddressSpace space, Cpu cpu, UserFaultChannel channel) = (stage.Space, stage.Cpu, stage.Channel);
        cpu.Store(Src, 1L);
        space.Unmap(Dst + 15 * Page, Page);
        Assert.Equal(Errno.EAGAIN, channel.Move(Dst, Src, Page));
        Assert.True(channel.TryRead(out _));
        Assert.Equal(Errno.None, channel.Move(Dst, Src, Page));
    }
}
