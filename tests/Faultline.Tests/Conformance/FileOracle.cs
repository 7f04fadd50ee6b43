using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// A file mapped shared and private on the host through libc and in a Faultline address space, to run the same
/// <see cref="FileOp"/>s on both and compare every outcome. On tmpfs (a <see cref="MemoryFile"/> against a file in
/// /dev/shm) mincore's vectors and the files' contents can be compared after any step; on a disk file system (a
/// <see cref="HostFile"/> against a file beside it) the two host files are compared after msync (its range) and fsync.
/// </summary>
internal sealed class FileOracle : IDisposable
{
    /// <summary>Pages each mapping spans.</summary>
    public const int Pages = 8;

    private const int Page = PageGeometry.PageSize;
    private const ulong Length = Pages * Page;
    private const ulong GuestShared = 0x5000_0000;
    private const ulong GuestPrivate = 0x6000_0000;

    private readonly bool _tmpfs;
    private readonly string _hostPath;
    private readonly string _guestPath;
    private readonly int _fd;
    private readonly AddressSpace _space;
    private readonly GuestFile _file;
    private readonly Cpu _cpu;
    private readonly Cpu _idle;
    private readonly List<string> _history = [];
    private ulong _hostShared;
    private ulong _hostPrivate;

    /// <summary>Both files start as <paramref name="initial"/>, every page of it cached, and are mapped whole.</summary>
    public FileOracle(FaultPath path, bool tmpfs, byte[] initial)
    {
        _tmpfs = tmpfs;
        string directory = tmpfs && Directory.Exists("/dev/shm") ? "/dev/shm" : Path.GetTempPath();
        _hostPath = Path.Combine(directory, $"faultline-map-oracle-{Guid.NewGuid():N}");
        _guestPath = Path.Combine(Path.GetTempPath(), $"faultline-map-guest-{Guid.NewGuid():N}");
        File.WriteAllBytes(_hostPath, initial);
        File.WriteAllBytes(_guestPath, initial);
        _fd = LibC.Open(_hostPath, LibC.O_RDWR);
        Assert.True(_fd >= 0, "open of the oracle file");
        _space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20 });
        _file = tmpfs ? new MemoryFile(_space, "oracle") : HostFile.Open(_space, _guestPath, writable: true);
        // The host file has every page of its bytes cached (just written); so has the guest's once written or read.
        if (tmpfs)
        {
            _file.Write(0, initial);
        }
        _file.Read(0, new byte[initial.Length]);
        _cpu = _space.AttachCpu();
        _idle = _space.AttachCpu();
        Assert.Equal(0, LibC.MmapErrno(0, Length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, _fd, 0, out _hostShared));
        Assert.Equal(0, LibC.MmapErrno(0, Length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE, _fd, 0, out _hostPrivate));
        _space.Map(GuestShared, Length, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, _file, 0);
        _space.Map(GuestPrivate, Length, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, _file, 0);
    }

    /// <summary>Runs <paramref name="op"/> on both sides and asserts the same outcome; on tmpfs, then the same state.</summary>
    public void Apply(FileOp op)
    {
        _history.Add(op.ToString());
        ulong host = (op.Shared ? _hostShared : _hostPrivate) + (ulong)op.Offset;
        ulong guest = (op.Shared ? GuestShared : GuestPrivate) + (ulong)op.Offset;
        switch (op.Kind)
        {
            case FileOpKind.Store:
            {
                int hostError = HostProbe.WriteErrno(host, op.Value);
                AccessOutcome outcome = _cpu.TryStore(guest, op.Value);
                Assert.True(Matches(hostError, outcome), $"{op}: host errno {hostError}, guest {outcome}; {History}");
                break;
            }
            case FileOpKind.Load:
            {
                int hostError = HostProbe.ReadErrno(host, out byte expected);
                AccessOutcome outcome = _cpu.TryLoad(guest, out byte actual);
                Assert.True(Matches(hostError, outcome), $"{op}: host errno {hostError}, guest {outcome}; {History}");
                Assert.True(expected == actual, $"{op}: host {expected}, guest {actual}; {History}");
                break;
            }
            case FileOpKind.Truncate:
                Assert.Equal(LibC.FtruncateErrno(_fd, op.Size), (int)_file.Truncate(op.Size));
                break;
            case FileOpKind.Pwrite:
            {
                var data = new byte[op.Size];
                new Random(op.Offset).NextBytes(data);
                Assert.Equal(LibC.PwriteErrno(_fd, data, op.Offset, out int hostWritten), (int)_file.TryWrite(op.Offset, data, out int written));
                Assert.Equal(hostWritten, written);
                break;
            }
            case FileOpKind.Msync:
                Assert.Equal(LibC.MsyncErrno(_hostShared, Length, 4), (int)_space.Msync(GuestShared, Length, SyncFlags.Sync));
                CompareFiles("msync", (int)Length);
                break;
            default:
                // munmap drops the mapping's pages but not the file's: mapped again, the stores are all there.
                Assert.Equal(0, LibC.MunmapErrno(_hostShared, Length));
                _space.Unmap(GuestShared, Length);
                Assert.Equal(0, LibC.MmapErrno(0, Length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED, _fd, 0, out _hostShared));
                _space.Map(GuestShared, Length, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, _file, 0);
                break;
        }
        if (_tmpfs)
        {
            CompareMincore(_hostShared, GuestShared, $"{op}, shared");
            CompareMincore(_hostPrivate, GuestPrivate, $"{op}, private");
            CompareFiles(op.ToString());
        }
    }

    /// <summary>A last msync of the shared mapping, then fsync: the files must match whole.</summary>
    public void Finish()
    {
        Assert.Equal(LibC.MsyncErrno(_hostShared, Length, 4), (int)_space.Msync(GuestShared, Length, SyncFlags.Sync));
        CompareFiles("the last msync", (int)Length);
        Assert.Equal(Errno.None, _file.Sync());
        CompareFiles("fsync");
    }

    public void Dispose()
    {
        LibC.MunmapErrno(_hostShared, Length);
        LibC.MunmapErrno(_hostPrivate, Length);
        LibC.Close(_fd);
        _cpu.Dispose();
        _idle.Dispose();
        _space.Dispose();
        _file.Dispose();
        File.Delete(_hostPath);
        File.Delete(_guestPath);
    }

    private string History => "steps: " + string.Join("; ", _history);

    private static bool Matches(int hostErrno, AccessOutcome outcome) =>
        hostErrno == 0 ? outcome == AccessOutcome.Ok : hostErrno == Host.Errno.EFAULT && outcome == AccessOutcome.BusError;

    private void CompareMincore(ulong host, ulong guest, string what)
    {
        var expected = new byte[Pages];
        var actual = new byte[Pages];
        Assert.Equal(0, LibC.MincoreErrno(host, Length, expected));
        Assert.Equal(Errno.None, _space.Mincore(guest, Length, actual));
        Assert.True(expected.AsSpan().SequenceEqual(actual),
            $"{what}: mincore host [{string.Join(",", expected)}] guest [{string.Join(",", actual)}]; {History}");
    }

    // The files byte for byte (on tmpfs the guest file's contents as pread gives them; on disk the two host files up to
    // `limit`: msync writes back only the mapped range, what a pwrite put past it reaches the host file at fsync), naming
    // the first difference.
    private void CompareFiles(string when, int limit = int.MaxValue)
    {
        byte[] expected = File.ReadAllBytes(_hostPath);
        byte[] actual = _tmpfs ? new byte[_file.Length] : File.ReadAllBytes(_guestPath);
        if (_tmpfs)
        {
            Assert.Equal(actual.Length, _file.Read(0, actual));
        }
        expected = expected[..Math.Min(expected.Length, limit)];
        actual = actual[..Math.Min(actual.Length, limit)];
        int first = expected.AsSpan().CommonPrefixLength(actual);
        Assert.True(expected.AsSpan().SequenceEqual(actual),
            $"after {when}: lengths {expected.Length} and {actual.Length}, first difference at byte {first}; {History}");
    }
}
