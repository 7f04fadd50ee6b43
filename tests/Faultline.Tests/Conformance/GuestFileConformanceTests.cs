using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel as the oracle for guest files: the same randomised sequence of <c>pread</c>, <c>pwrite</c> and
/// <c>ftruncate</c> (bad offsets included) runs on a host file through libc and on another through
/// <see cref="HostFile"/> (and on a <see cref="MemoryFile"/>), comparing every result, errno, count and byte read;
/// after a <see cref="GuestFile.Sync"/> the two host files match byte for byte.
/// </summary>
public sealed class GuestFileConformanceTests : IDisposable
{
    private const int Page = PageGeometry.PageSize;
    private const int Span = 12 * Page;

    private readonly AddressSpace _space = new(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20 });
    private readonly string _hostPath = Path.Combine(Path.GetTempPath(), $"faultline-oracle-{Guid.NewGuid():N}");
    private readonly string _guestPath = Path.Combine(Path.GetTempPath(), $"faultline-guest-{Guid.NewGuid():N}");

    public void Dispose()
    {
        _space.Dispose();
        File.Delete(_hostPath);
        File.Delete(_guestPath);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Random_sequences_match_the_host(int seed)
    {
        byte[] initial = Pattern(3 * Page + 77, seed);
        File.WriteAllBytes(_hostPath, initial);
        File.WriteAllBytes(_guestPath, initial);
        int fd = LibC.Open(_hostPath, LibC.O_RDWR);
        Assert.True(fd >= 0, "open of the oracle file");
        try
        {
            using HostFile file = HostFile.Open(_space, _guestPath, writable: true);
            using var memory = new MemoryFile(_space);
            memory.Write(0, initial);
            var random = new Random(seed);
            for (int step = 0; step < 300; step++)
            {
                RunStep(random, fd, _hostPath, file, memory, step);
            }
            Assert.Equal(Errno.None, file.Sync());
            Assert.Equal(File.ReadAllBytes(_hostPath), File.ReadAllBytes(_guestPath));
        }
        finally
        {
            LibC.Close(fd);
        }
    }

    [Fact]
    public void A_read_only_file_refuses_writes_and_truncation_as_the_host_does()
    {
        File.WriteAllBytes(_hostPath, Pattern(100, 9));
        int fd = LibC.Open(_hostPath, LibC.O_RDONLY);
        Assert.True(fd >= 0, "open of the oracle file");
        try
        {
            using HostFile file = HostFile.Open(_space, _hostPath, writable: false);
            Assert.Equal(LibC.PwriteErrno(fd, [1, 2], 0, out _), (int)file.TryWrite(0, [1, 2], out _));
            Assert.Equal(LibC.PwriteErrno(fd, [1, 2], long.MaxValue - 1, out _), (int)file.TryWrite(long.MaxValue - 1, [1, 2], out _));
            Assert.Equal(LibC.PwriteErrno(fd, [1, 2], -1, out _), (int)file.TryWrite(-1, [1, 2], out _));
            Assert.Equal(LibC.FtruncateErrno(fd, 0), (int)file.Truncate(0));
            Assert.Equal(LibC.FtruncateErrno(fd, -1), (int)file.Truncate(-1));
            var expected = new byte[200];
            var actual = new byte[200];
            Assert.Equal(LibC.PreadErrno(fd, expected, 0, out int hostRead), (int)file.TryRead(0, actual, out int guestRead));
            Assert.Equal(hostRead, guestRead);
            Assert.Equal(expected, actual);
        }
        finally
        {
            LibC.Close(fd);
        }
    }

    [Fact]
    public void Truncation_past_the_largest_file_and_offsets_that_overflow_fail_as_on_the_host()
    {
        File.WriteAllBytes(_hostPath, Pattern(100, 11));
        File.WriteAllBytes(_guestPath, Pattern(100, 11));
        int fd = LibC.Open(_hostPath, LibC.O_RDWR);
        Assert.True(fd >= 0, "open of the oracle file");
        try
        {
            using HostFile file = HostFile.Open(_space, _guestPath, writable: true);
            int hostError = LibC.FtruncateErrno(fd, long.MaxValue);
            Assert.Equal(hostError, (int)file.Truncate(long.MaxValue));
            Assert.Equal(new FileInfo(_hostPath).Length, file.Length);
            Assert.Equal(LibC.PwriteErrno(fd, [1, 2], long.MaxValue - 1, out _), (int)file.TryWrite(long.MaxValue - 1, [1, 2], out _));
            var buffer = new byte[2];
            Assert.Equal(LibC.PreadErrno(fd, buffer, long.MaxValue - 1, out _), (int)file.TryRead(long.MaxValue - 1, buffer, out _));
        }
        finally
        {
            LibC.Close(fd);
        }
    }

    private static void RunStep(Random random, int fd, string hostPath, HostFile file, MemoryFile memory, int step)
    {
        long offset = random.Next(10) == 0 ? -random.Next(1, 3 * Page) : random.Next(Span);
        int count = random.Next(4) == 0 ? random.Next(Page / 2) : random.Next(3 * Page);
        string what;
        switch (random.Next(3))
        {
            case 0:
            {
                what = $"pwrite({count}, {offset})";
                byte[] data = Pattern(count, step);
                int hostError = LibC.PwriteErrno(fd, data, offset, out int hostWritten);
                Errno guestError = file.TryWrite(offset, data, out int guestWritten);
                Errno memoryError = memory.TryWrite(offset, data, out int memoryWritten);
                Assert.True(hostError == (int)guestError && hostError == (int)memoryError, $"{what}: errno {hostError} {guestError} {memoryError}");
                Assert.True(hostWritten == guestWritten && hostWritten == memoryWritten, $"{what}: count");
                break;
            }
            case 1:
            {
                what = $"pread({count}, {offset})";
                var expected = new byte[count];
                var actual = new byte[count];
                var fromMemory = new byte[count];
                int hostError = LibC.PreadErrno(fd, expected, offset, out int hostRead);
                Errno guestError = file.TryRead(offset, actual, out int guestRead);
                Errno memoryError = memory.TryRead(offset, fromMemory, out int memoryRead);
                Assert.True(hostError == (int)guestError && hostError == (int)memoryError, $"{what}: errno {hostError} {guestError} {memoryError}");
                Assert.True(hostRead == guestRead && hostRead == memoryRead, $"{what}: count {hostRead} {guestRead} {memoryRead}");
                Assert.True(expected.AsSpan().SequenceEqual(actual) && expected.AsSpan().SequenceEqual(fromMemory), $"{what}: bytes");
                break;
            }
            default:
            {
                long length = offset < 0 ? offset : random.Next(Span);
                what = $"ftruncate({length})";
                int hostError = LibC.FtruncateErrno(fd, length);
                Errno guestError = file.Truncate(length);
                Errno memoryError = memory.Truncate(length);
                Assert.True(hostError == (int)guestError && hostError == (int)memoryError, $"{what}: errno {hostError} {guestError} {memoryError}");
                break;
            }
        }
        long hostLength = new FileInfo(hostPath).Length;
        Assert.True(hostLength == file.Length && hostLength == memory.Length, $"after {what}: length {hostLength} {file.Length} {memory.Length}");
    }

    private static byte[] Pattern(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
