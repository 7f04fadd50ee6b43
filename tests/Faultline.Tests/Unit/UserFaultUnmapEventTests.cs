using Faultline.Concurrency;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// <c>UFFD_EVENT_UNMAP</c> for every unmap Linux reports through <c>userfaultfd_unmap_prep</c> (the munmap core that
/// munmap, a MAP_FIXED mmap, mremap's shrink, destination and source, and brk's shrink share), in <c>do_mremap</c>'s
/// order (the destination's unmap, the remap, then the shrink and the source), and <c>mmap_changing</c> raised from the
/// unmap's start, so a resolution before the event is posted already answers EAGAIN.
/// </summary>
public sealed class UserFaultUnmapEventTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x1000_0000;
    private const UserFaultFeatures Events = UserFaultFeatures.EventUnmap | UserFaultFeatures.EventRemap;

    private static AddressSpace NewSpace() => new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

    private static byte[] Filled(byte value) => Enumerable.Repeat(value, (int)Page).ToArray();

    private static (UserFaultEventKind, ulong, ulong) Next(UserFaultChannel channel)
    {
        Assert.True(channel.TryRead(out UserFaultEvent e), "an event is queued");
        return (e.Kind, e.Address, e.Kind == UserFaultEventKind.Remap ? e.To : e.End);
    }

    [Fact]
    public void AMapFixedOverARegisteredRangeIsReportedAsAnUnmap()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space, Events);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));

        space.Map(a + Page, 2 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal((UserFaultEventKind.Unmap, a + Page, a + 3 * Page), Next(channel));
        Assert.False(channel.TryRead(out _));
        // A MAP_FIXED over nothing registered reports nothing.
        space.Map(Base + 64 * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(Base + 64 * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void AnMremapShrinkIsReportedAsAnUnmapOfTheTail()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space, Events);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));

        Assert.Equal(a, space.Remap(a, 4 * Page, Page));
        // mmap_changing until the event is read.
        Assert.Equal(Errno.EAGAIN, channel.Copy(a, Filled(1)));
        Assert.Equal((UserFaultEventKind.Unmap, a + Page, a + 4 * Page), Next(channel));
        Assert.Equal(Errno.None, channel.Copy(a, Filled(1)));
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void AFixedMoveReportsTheDestinationsUnmapThenTheRemapThenTheShrinkAndTheSource()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        ulong b = space.Map(Base + 32 * Page, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space, Events);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));
        Assert.Equal(Errno.None, channel.Register(b, 4 * Page, UserFaultModes.Missing));

        // Shrink [a, +4) to 2 pages and move them over b.
        Assert.Equal(b, space.Remap(a, 4 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, b));
        Assert.Equal((UserFaultEventKind.Unmap, b, b + 2 * Page), Next(channel));
        Assert.Equal((UserFaultEventKind.Remap, a, b), Next(channel));
        Assert.Equal((UserFaultEventKind.Unmap, a + 2 * Page, a + 4 * Page), Next(channel));
        Assert.Equal((UserFaultEventKind.Unmap, a, a + 2 * Page), Next(channel));
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void AMoveWithoutTheRemapFeatureStillReportsTheSourcesUnmap()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space, UserFaultFeatures.EventUnmap);
        Assert.Equal(Errno.None, channel.Register(a, 2 * Page, UserFaultModes.Missing));

        // mremap_userfaultfd_prep drops the copy's registration; the source still names the channel when it is unmapped.
        ulong moved = space.Remap(a, 2 * Page, 2 * Page, RemapFlags.MayMove | RemapFlags.Fixed, Base + 32 * Page);
        Assert.Equal((UserFaultEventKind.Unmap, a, a + 2 * Page), Next(channel));
        Assert.False(channel.TryRead(out _));
        Assert.Equal(Errno.ENOENT, channel.Copy(moved, Filled(1)));
    }

    [Fact]
    public void ABrkShrinkIsReportedAsAnUnmap()
    {
        using AddressSpace space = NewSpace();
        ulong start = space.Brk(0);
        Assert.Equal(start + 4 * Page, space.Brk(start + 4 * Page));
        using var channel = new UserFaultChannel(space, Events);
        Assert.Equal(Errno.None, channel.Register(start, 4 * Page, UserFaultModes.Missing));

        Assert.Equal(start + Page, space.Brk(start + Page));
        Assert.Equal((UserFaultEventKind.Unmap, start + Page, start + 4 * Page), Next(channel));
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void WithoutTheUnmapFeatureNoUnmapIsReported()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));
        space.Remap(a, 4 * Page, 2 * Page);
        space.Map(a, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Unmap(a, 2 * Page);
        Assert.False(channel.TryRead(out _));
    }

    [Fact]
    public void AResolutionAfterTheUnmapButBeforeItsEventIsPostedAnswersEagain()
    {
        using AddressSpace space = NewSpace();
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using var channel = new UserFaultChannel(space, Events);
        Assert.Equal(Errno.None, channel.Register(a, 4 * Page, UserFaultModes.Missing));

        using var threads = new ThreadScope();
        // The munmap stops with the lock dropped and its event not yet posted (userfaultfd_unmap_complete not reached).
        using var unlocked = new ProbeGate(space, ProbePoint.UnmapUnlockedBeforeRelease, ThreadRole.Is("unmapper"));
        var unmap = threads.Run("unmapper", () => space.TryUnmap(a + 2 * Page, 2 * Page));
        unlocked.WaitArrived();
        Assert.False(channel.TryRead(out _));
        // userfaultfd_unmap_prep raised mmap_changing: a copy into the part still mapped is refused.
        Assert.Equal(Errno.EAGAIN, channel.Copy(a, Filled(3)));
        unlocked.Release();
        Assert.Equal(Errno.None, unmap.Join());
        Assert.Equal((UserFaultEventKind.Unmap, a + 2 * Page, a + 4 * Page), Next(channel));
        Assert.Equal(Errno.None, channel.Copy(a, Filled(3)));
    }
}
