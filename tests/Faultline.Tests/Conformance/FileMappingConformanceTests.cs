using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel as the oracle for file mappings: the same seeded sequence of stores and loads through a shared and a
/// private mapping, file writes, truncations (shrinking and growing), msync, munmap and mmap again runs on a host file
/// through libc and on a guest file, comparing every access outcome (SIGBUS past the end of the file: EFAULT from the
/// host's remote access), every byte loaded and every errno. On tmpfs (a <see cref="MemoryFile"/> against a file in
/// /dev/shm) mincore's vectors and the files' contents are compared after every step; on a disk file system (a
/// <see cref="HostFile"/> against a file beside it) the two host files byte for byte after each msync (its range) and
/// after the last fsync (mincore is left out there: the host's read-ahead caches pages the guest does not). mmap's errnos on bad input are compared one by one, and the maps line of the
/// same file mapped by both.
/// </summary>
public sealed class FileMappingConformanceTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;
    private const int Pages = 8;
    private const ulong GuestShared = 0x5000_0000;
    private const ulong GuestPrivate = 0x6000_0000;

    private readonly List<string> History = [];
    private readonly string _tmpfsPath = Path.Combine(SharedMemoryDirectory(), $"faultline-map-oracle-{Guid.NewGuid():N}");
    private readonly string _diskPath = Path.Combine(Path.GetTempPath(), $"faultline-map-oracle-{Guid.NewGuid():N}");
    private readonly string _guestPath = Path.Combine(Path.GetTempPath(), $"faultline-map-guest-{Guid.NewGuid():N}");
    private string _hostPath = "";
    private bool _tmpfs;

    public static TheoryData<FaultPath, int, bool> Runs => new()
    {
        { FaultPath.MmapLock, 1, true }, { FaultPath.Speculative, 2, true }, { FaultPath.VmaLock, 3, true },
        { FaultPath.MmapLock, 4, false }, { FaultPath.Speculative, 5, false }, { FaultPath.VmaLock, 6, false },
    };

    public void Dispose()
    {
        File.Delete(_tmpfsPath);
        File.Delete(_diskPath);
        File.Delete(_guestPath);
    }

    // tmpfs, where a read of a hole caches a page just as the guest's cache does, and nothing is read ahead.
    private static string SharedMemoryDirectory() => Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();

    [Theory]
    [MemberData(nameof(Runs))]
    public void Random_sequences_on_a_shared_and_a_private_mapping_match_the_host(FaultPath path, int seed, bool tmpfs)
    {
        var random = new Random(seed);
        byte[] initial = new byte[5 * Page + 123];
        random.NextBytes(initial);
        _tmpfs = tmpfs;
        _hostPath = tmpfs ? _tmpfsPath : _diskPath;
        File.WriteAllBytes(_hostPath, initial);
        File.WriteAllBytes(_guestPath, initial);
        int fd = LibC.Open(_hostPath, LibC.O_RDWR);
        Assert.True(fd >= 0, "open of the oracle file");
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });
        using GuestFile file = tmpfs ? new MemoryFile(space, "oracle") : HostFile.Open(space, _guestPath, writable: true);
        // The host file has every page of its bytes cached (just written); so has the guest's once written or read.
        if (tmpfs)
        {
            file.Write(0, initial);
        }
        file.Read(0, new byte[initial.Length]);
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        const ulong length = Pages * Page;
        ulong hostShared = 0, hostPrivate = 0;
        try
        {
            Assert.Equal(0, LibC.MmapErrno(0, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, fd, 0, out hostShared));
            Assert.Equal(0, LibC.MmapErrno(0, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE, fd, 0, out hostPrivate));
            space.Map(GuestShared, length, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, file, 0);
            space.Map(GuestPrivate, length, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, file, 0);
            for (int step = 0; step < 300; step++)
            {
                string what = RunStep(random, fd, file, space, cpu, ref hostShared, hostPrivate);
                History.Add(what);
                if (tmpfs)
                {
                    CompareMincore(space, hostShared, GuestShared, $"step {step} ({what}), shared");
                    CompareMincore(space, hostPrivate, GuestPrivate, $"step {step} ({what}), private");
                    CompareFiles(file, what);
                }
            }
            Assert.Equal(LibC.MsyncErrno(hostShared, length, 4), (int)space.Msync(GuestShared, length, SyncFlags.Sync));
            CompareFiles(file, "the last msync", Pages * Page);
            Assert.Equal(Errno.None, file.Sync());
            CompareFiles(file, "fsync");
        }
        finally
        {
            LibC.MunmapErrno(hostShared, length);
            LibC.MunmapErrno(hostPrivate, length);
            LibC.Close(fd);
        }
    }

    // One random step on both sides; returns its description for failure messages.
    private string RunStep(Random random, int fd, GuestFile file, AddressSpace space, Cpu cpu, ref ulong hostShared, ulong hostPrivate)
    {
        const ulong length = Pages * Page;
        ulong offset = (ulong)random.Next((int)length);
        bool shared = random.Next(2) == 0;
        ulong host = (shared ? hostShared : hostPrivate) + offset;
        ulong guest = (shared ? GuestShared : GuestPrivate) + offset;
        string where = $"{(shared ? "shared" : "private")}+0x{offset:x}";
        switch (random.Next(10))
        {
            case 0 or 1 or 2:
            {
                byte value = (byte)random.Next(256);
                int hostError = HostProbe.WriteErrno(host, value);
                AccessOutcome outcome = cpu.TryStore(guest, value);
                Assert.True(Matches(hostError, outcome), $"store at {where}: host errno {hostError}, guest {outcome}");
                return $"store {where}";
            }
            case 3 or 4 or 5:
            {
                int hostError = HostProbe.ReadErrno(host, out byte expected);
                AccessOutcome outcome = cpu.TryLoad(guest, out byte actual);
                Assert.True(Matches(hostError, outcome), $"load at {where}: host errno {hostError}, guest {outcome}");
                Assert.Equal(expected, actual);
                return $"load {where}";
            }
            case 6:
            {
                long size = random.Next(Pages * Page + 2 * Page);
                Assert.Equal(LibC.FtruncateErrno(fd, size), (int)file.Truncate(size));
                return $"truncate {size}";
            }
            case 7:
            {
                var data = new byte[random.Next(1, 2 * Page)];
                random.NextBytes(data);
                long at = random.Next(Pages * Page);
                Assert.Equal(LibC.PwriteErrno(fd, data, at, out int hostWritten), (int)file.TryWrite(at, data, out int written));
                Assert.Equal(hostWritten, written);
                return $"pwrite {data.Length} at {at}";
            }
            case 8:
            {
                Assert.Equal(LibC.MsyncErrno(hostShared, length, 4), (int)space.Msync(GuestShared, length, SyncFlags.Sync));
                CompareFiles(file, "msync", Pages * Page);
                return "msync";
            }
            default:
            {
                // munmap drops the mapping's pages but not the file's: mapped again, the stores are all there.
                Assert.Equal(0, LibC.MunmapErrno(hostShared, length));
                space.Unmap(GuestShared, length);
                Assert.Equal(0, LibC.MmapErrno(0, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, fd, 0, out hostShared));
                space.Map(GuestShared, length, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, file, 0);
                return "munmap and mmap";
            }
        }
    }

    // The files byte for byte (on tmpfs the guest file's contents as pread gives them; on disk the two host files up to
    // `limit`: msync writes back only the mapped range, what a pwrite put past it reaches the host file at fsync), naming
    // the first difference.
    private void CompareFiles(GuestFile file, string when, int limit = int.MaxValue)
    {
        byte[] expected = File.ReadAllBytes(_hostPath);
        byte[] actual = _tmpfs ? new byte[file.Length] : File.ReadAllBytes(_guestPath);
        if (_tmpfs)
        {
            Assert.Equal(actual.Length, file.Read(0, actual));
        }
        expected = expected[..Math.Min(expected.Length, limit)];
        actual = actual[..Math.Min(actual.Length, limit)];
        int first = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(expected.AsSpan().SequenceEqual(actual),
            $"after {when}: lengths {expected.Length} and {actual.Length}, first difference at byte {first}; steps: {string.Join("; ", History)}");
    }

    private static bool Matches(int hostErrno, AccessOutcome outcome) =>
        hostErrno == 0 ? outcome == AccessOutcome.Ok : hostErrno == Host.Errno.EFAULT && outcome == AccessOutcome.BusError;

    private static void CompareMincore(AddressSpace space, ulong host, ulong guest, string what)
    {
        var expected = new byte[Pages];
        var actual = new byte[Pages];
        Assert.Equal(0, LibC.MincoreErrno(host, Pages * Page, expected));
        Assert.Equal(Errno.None, space.Mincore(guest, Pages * Page, actual));
        Assert.True(expected.AsSpan().SequenceEqual(actual),
            $"{what}: mincore host [{string.Join(",", expected)}] guest [{string.Join(",", actual)}]");
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
