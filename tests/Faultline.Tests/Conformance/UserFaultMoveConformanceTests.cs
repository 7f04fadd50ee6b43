using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel's <c>UFFDIO_MOVE</c> is the oracle for <see cref="UserFaultChannel.Move(ulong, ulong, ulong, UserFaultMoveFlags, out ulong)"/>:
/// the same mappings on both sides (a private source, a private destination registered for missing faults, a read-only
/// page, a shared page, a hole), the same moves, and each answer must match — errno, and the bytes moved where some
/// moved — as must the contents of the source and the residency of both ranges afterwards. Every fault path.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class UserFaultMoveConformanceTests
{
    private const ulong Page = PageGeometry.PageSize;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [HostUserFaultMoveTheory]
    [MemberData(nameof(Paths))]
    public unsafe void MovesAnswerAsTheHosts(FaultPath path)
    {
        using var region = new HostRegion(64 * Page);
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 16 << 20,
            MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage,
        });
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        ulong src = region.Start, ro = src + 20 * Page, shared = src + 22 * Page, hole = src + 24 * Page, dst = src + 32 * Page;
        const int rw = Linux.PROT_READ | Linux.PROT_WRITE, priv = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED;
        Assert.Equal(0, region.Map(src, 16 * Page, rw, priv));
        Assert.Equal(0, region.Map(dst, 16 * Page, rw, priv));
        Assert.Equal(0, region.Map(ro, Page, Linux.PROT_READ, priv | Linux.MAP_POPULATE));
        Assert.Equal(0, region.Map(shared, Page, rw, Linux.MAP_SHARED | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
        Assert.Equal(0, region.Unmap(hole, Page));
        space.Map(src, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(dst, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(ro, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);
        space.Map(shared, Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        *(long*)shared = 9;
        cpu.Store(shared, 9L);
        for (ulong i = 0; i < 4; i++)
        {
            *(long*)(src + i * Page) = (long)i + 1;
            cpu.Store(src + i * Page, (long)i + 1);
        }
        using var host = new HostUserFaultMove();
        using var channel = new UserFaultChannel(space);
        Assert.Equal(0, host.Register(dst, 16 * Page));
        Assert.Equal(Errno.None, channel.Register(dst, 16 * Page, UserFaultModes.Missing));

        const ulong holes = 2, badMode = 4;
        (ulong Dst, ulong Src, ulong Length, ulong Mode, string What)[] moves =
        [
            (dst, src, Page, 0, "one page"),
            (dst, src + Page, Page, 0, "onto a populated page"),
            (dst + 8 * Page, src + 8 * Page, Page, 0, "from a hole"),
            (dst + 8 * Page, src + 8 * Page, Page, holes, "from a hole, holes allowed"),
            (dst + 9 * Page, src + Page, 2 * Page, 0, "two pages"),
            (dst + 11 * Page, src + 3 * Page, 2 * Page, 0, "a page, then a hole"),
            (dst + 1, src, Page, 0, "unaligned"),
            (dst, src, 0, 0, "empty"),
            (dst + 12 * Page, src + 12 * Page, Page, badMode, "an unknown mode"),
            (src + 12 * Page, dst, Page, 0, "into an unregistered range"),
            (dst + 12 * Page, src + 12 * Page, 8 * Page, 0, "a source past its mapping"),
            (dst + 13 * Page, hole, Page, 0, "from nothing mapped"),
            (hole, src + 4 * Page, Page, 0, "into nothing mapped"),
            (dst + 15 * Page, ro, Page, 0, "from a read-only mapping"),
            (dst + 15 * Page, shared, Page, 0, "from shared memory"),
            (dst + 5 * Page, dst, Page, 0, "inside the destination"),
            (dst + 6 * Page, dst + 5 * Page, 2 * Page, holes, "overlapping"),
            (dst + 7 * Page, dst + 9 * Page, Page, 0, "inside, onto a populated page"),
        ];
        foreach ((ulong d, ulong s, ulong length, ulong mode, string what) in moves)
        {
            int hostErrno = host.Move(d, s, length, mode, out long hostMoved);
            Errno ours = channel.Move(d, s, length, (UserFaultMoveFlags)mode, out ulong moved);
            Assert.True(hostErrno == (int)ours, $"{what}: host errno {hostErrno}, Faultline {ours}");
            if (hostErrno is 0 or (int)Errno.EAGAIN)
            {
                Assert.True((ulong)hostMoved == moved, $"{what}: host moved {hostMoved}, Faultline {moved}");
            }
        }

        // Residency of both ranges (mincore: nothing touches a registered page), and what the source holds.
        var hostResident = new byte[16];
        var ours16 = new byte[16];
        foreach (ulong start in new[] { src, dst })
        {
            Assert.Equal(0, LibC.MincoreErrno(start, 16 * Page, hostResident));
            Assert.Equal(Errno.None, space.Mincore(start, 16 * Page, ours16));
            Assert.Equal(hostResident.Select(b => b & 1), ours16.Select(b => b & 1));
        }
        for (ulong i = 0; i < 16; i++)
        {
            Assert.Equal(*(long*)(src + i * Page), cpu.Load<long>(src + i * Page));
        }
    }
}
