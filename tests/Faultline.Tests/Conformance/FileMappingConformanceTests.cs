using Faultline.Host;
using FsCheck;
using FsCheck.Fluent;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel as the oracle for file mappings: the same sequence of stores and loads through a shared and a private
/// mapping, file writes, truncations (shrinking and growing), msync, munmap and mmap again runs on a host file through
/// libc and on a guest file (<see cref="FileOracle"/>), comparing every access outcome (SIGBUS past the end of the file:
/// EFAULT from the host's remote access), every byte loaded and every errno; on tmpfs also mincore and the contents
/// after every step, on disk the host files after msync and fsync. The sequences are seeded draws and seeded
/// FsCheck-generated ones of every length. mmap's errnos on bad input are compared one by one,
/// and the maps line of the same file mapped by both.
/// </summary>
public sealed class FileMappingConformanceTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;

    private readonly string _diskPath = Path.Combine(Path.GetTempPath(), $"faultline-map-oracle-{Guid.NewGuid():N}");

    public static TheoryData<FaultPath, int, bool> Runs => new()
    {
        { FaultPath.MmapLock, 1, true }, { FaultPath.Speculative, 2, true }, { FaultPath.VmaLock, 3, true },
        { FaultPath.MmapLock, 4, false }, { FaultPath.Speculative, 5, false }, { FaultPath.VmaLock, 6, false },
    };

    public void Dispose() => File.Delete(_diskPath);

    [Theory]
    [MemberData(nameof(Runs))]
    public void Random_sequences_on_a_shared_and_a_private_mapping_match_the_host(FaultPath path, int seed, bool tmpfs)
    {
        var random = new Random(seed);
        byte[] initial = new byte[5 * Page + 123];
        random.NextBytes(initial);
        using var oracle = new FileOracle(path, tmpfs, initial);
        for (int step = 0; step < 300; step++)
        {
            oracle.Apply(FileOp.Next(random));
        }
        oracle.Finish();
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void Generated_sequences_match_the_host_on_tmpfs(FaultPath path)
    {
        byte[] initial = new byte[3 * Page + 500];
        new Random(7).NextBytes(initial);
        // Seeded, so a run is repeatable; a failure names the sequence's steps and the seed that replays it.
        Prop.ForAll(Arb.From(Gen.ArrayOf(FileOp.Generator)), (FileOp[] ops) =>
        {
            using var oracle = new FileOracle(path, tmpfs: true, initial);
            foreach (FileOp op in ops)
            {
                oracle.Apply(op);
            }
            oracle.Finish();
        }).Check(Config.QuickThrowOnFailure.WithMaxTest(25).WithReplay(0x5eed_f11e, 0x9e37_79b9_7f4a_7c15));
    }

    [Fact]
    public void Mmap_errnos_of_bad_input_match_the_host()
    {
        File.WriteAllBytes(_diskPath, new byte[4 * Page]);
        int fd = LibC.Open(_diskPath, LibC.O_RDWR);
        int readOnlyFd = LibC.Open(_diskPath, LibC.O_RDONLY);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using HostFile file = HostFile.Open(space, _diskPath, writable: true);
        using HostFile readOnly = HostFile.Open(space, _diskPath, writable: false);
        try
        {
            (int Flags, int Prot, long Offset, ulong Length, bool ReadOnly)[] cases =
            [
                (Linux.MAP_SHARED, 3, 100, Page, false), (Linux.MAP_SHARED, 3, 0, 0, false), (0, 3, 0, Page, false),
                (0x04, 3, 0, Page, false), (Linux.MAP_PRIVATE | Linux.MAP_GROWSDOWN, 3, 0, Page, false),
                (Linux.MAP_PRIVATE | 0x40000, 3, 0, Page, false), (Linux.MAP_SHARED, 1, -Page, Page, false),
                (Linux.MAP_SHARED, 1, long.MaxValue - Page + 1, 2 * Page, false),
                (Linux.MAP_SHARED_VALIDATE | 0x80000, 1, 0, Page, false), (Linux.MAP_SHARED_VALIDATE | 0x200, 1, 0, Page, false),
                (Linux.MAP_SHARED_VALIDATE | 0x80, 1, 0, Page, false), (Linux.MAP_SHARED_VALIDATE | (21 << 26), 1, 0, Page, false),
                (Linux.MAP_SHARED | 0x200, 1, 0, Page, false), (Linux.MAP_SHARED, 3, 0, Page, true),
                (Linux.MAP_SHARED, 1, 0, Page, true), (Linux.MAP_PRIVATE, 3, 0, Page, true),
                (Linux.MAP_SHARED_VALIDATE, 3, 0, Page, true),
            ];
            foreach ((int flags, int prot, long offset, ulong length, bool ro) in cases)
            {
                int hostErrno = LibC.MmapErrno(0, length, prot, flags, ro ? readOnlyFd : fd, offset, out ulong hostMapped);
                Errno guestErrno = space.TryMap(0, length, (Protection)prot, (MapFlags)flags, ro ? readOnly : file, offset, out ulong mapped);
                Assert.True(hostErrno == (int)guestErrno, $"mmap(flags 0x{flags:x}, prot {prot}, offset {offset}, ro {ro}): host {hostErrno}, guest {guestErrno}");
                if (hostErrno == 0)
                {
                    LibC.MunmapErrno(hostMapped, length);
                    space.Unmap(mapped, length);
                }
            }
            // A shared read-only mapping of a read-only file cannot become writable.
            Assert.Equal(0, LibC.MmapErrno(0, Page, Linux.PROT_READ, Linux.MAP_SHARED, readOnlyFd, 0, out ulong hostRo));
            ulong guestRo = space.Map(0, Page, Protection.Read, MapFlags.Shared, readOnly, 0);
            Assert.Equal(LibC.MprotectErrno(hostRo, Page, Linux.PROT_READ | Linux.PROT_WRITE), (int)space.TryProtect(guestRo, Page, Protection.ReadWrite));
            LibC.MunmapErrno(hostRo, Page);
        }
        finally
        {
            LibC.Close(fd);
            LibC.Close(readOnlyFd);
        }
    }

    [Fact]
    public void The_maps_line_names_the_file_its_device_inode_and_offset_as_the_host_does()
    {
        File.WriteAllBytes(_diskPath, new byte[4 * Page]);
        int fd = LibC.Open(_diskPath, LibC.O_RDONLY);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using HostFile file = HostFile.Open(space, _diskPath, writable: false);
        try
        {
            Assert.Equal(0, LibC.MmapErrno(0, 2 * Page, Linux.PROT_READ, Linux.MAP_SHARED, fd, Page, out ulong host));
            ulong guest = space.Map(0, 2 * Page, Protection.Read, MapFlags.Shared, file, Page);
            MapsLine expected = HostMaps.ReadRegion(host, host + 2 * Page).Single();
            string line = space.GetMaps().Split('\n').Single(l => l.StartsWith($"{guest:x8}-", StringComparison.Ordinal));
            string[] fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(expected.Perms, fields[1]);
            Assert.Equal(expected.Offset, Convert.ToUInt64(fields[2], 16));
            Assert.Equal(expected.Device, fields[3]);
            Assert.Equal(expected.Inode, ulong.Parse(fields[4], System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(expected.Name, fields[5].Trim());
            LibC.MunmapErrno(host, 2 * Page);
        }
        finally
        {
            LibC.Close(fd);
        }
    }
}
