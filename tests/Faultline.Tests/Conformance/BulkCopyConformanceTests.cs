using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// Bulk copies against the host's <c>process_vm_readv</c>/<c>process_vm_writev</c> on this process, over the same
/// layout at the same addresses: the byte count the host returns (its <c>EFAULT</c> when nothing was copied) must equal
/// Faultline's <see cref="GuestTransfer.BytesTransferred"/>, and the bytes read or left in memory must be the same.
/// The layout has no write-only page: there a Cpu's load succeeds and the host's <c>VM_READ</c> check fails (see
/// <see cref="BadInputConformanceTests.WriteOnlyPagesAreReadableByACpuUnlikeProcessVmReadv"/>).
/// </summary>
[Collection(HostRegionCollection.Name)]
public sealed class BulkCopyConformanceTests
{
    private const ulong Page = 4096;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS;
    private const int RegionPages = 10;

    private readonly ITestOutputHelper _output;

    public BulkCopyConformanceTests(ITestOutputHelper output) => _output = output;

    public sealed record Case(string Name, bool Write, (ulong Page, int Offset, int Length)[] Segments, int BufferLength)
    {
        public override string ToString() => Name;
    }

    // Layout in pages: [0, 4) read-write, 4 PROT_NONE, 5 hole, [6, 8) read-only, [8, 10) read-write, untouched.
    public static TheoryData<Case> Cases => new()
    {
        new("read within read-write pages", false, [(0, 100, 3 * 4096)], 3 * 4096),
        new("read into PROT_NONE", false, [(2, 10, 3 * 4096)], 3 * 4096),
        new("read starting in the hole", false, [(5, 0, 16)], 16),
        new("read of untouched pages", false, [(8, 4000, 200)], 200),
        new("vectored read up to the hole", false, [(0, 8, 16), (3, 0, 0), (6, 4090, 20), (5, 0, 8), (0, 0, 8)], 64),
        new("vectored read with a short buffer", false, [(0, 0, 100), (6, 0, 100)], 150),
        new("write within read-write pages", true, [(1, 7, 2 * 4096)], 2 * 4096),
        new("write into PROT_NONE", true, [(3, 4000, 300)], 300),
        new("write into read-only", true, [(6, 0, 8)], 8),
        new("vectored write stopping at read-only", true, [(0, 0, 32), (8, 4090, 12), (7, 4092, 8), (0, 64, 8)], 60),
        new("write to untouched pages", true, [(8, 100, 4096)], 4096),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public unsafe void ByteCountsAndContentsMatchTheHost(Case c)
    {
        using var region = new HostRegion(16 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        using Cpu cpu = space.AttachCpu();
        Build(region, space, cpu, s);

        GuestSegment[] segments = [.. c.Segments.Select(g => new GuestSegment(s + g.Page * Page + (ulong)g.Offset, g.Length))];
        byte[] hostBuffer = new byte[c.BufferLength];
        byte[] ourBuffer = new byte[c.BufferLength];
        if (c.Write)
        {
            for (int i = 0; i < c.BufferLength; i++)
            {
                hostBuffer[i] = ourBuffer[i] = (byte)(0xC0 ^ i);
            }
        }

        long hostBytes = HostCopy(c.Write, segments, hostBuffer, out int hostErrno);
        GuestTransfer ours = c.Write ? cpu.WriteVectored(segments, ourBuffer) : cpu.ReadVectored(segments, ourBuffer);
        _output.WriteLine($"host: {(hostBytes >= 0 ? $"{hostBytes} bytes" : Host.Errno.Name(hostErrno))}; Faultline: {ours}");

        Assert.Equal(hostBytes < 0 ? 0 : hostBytes, ours.BytesTransferred);
        if (hostBytes < 0)
        {
            Assert.Equal(Host.Errno.EFAULT, hostErrno);
            Assert.False(ours.IsComplete);
        }
        Assert.Equal(hostBuffer, ourBuffer);
        foreach (int page in new[] { 0, 1, 2, 3, 6, 7, 8, 9 })
        {
            ulong at = s + (ulong)page * Page;
            var mine = new byte[Page];
            Assert.True(cpu.ReadPartial(at, mine).IsComplete);
            Assert.Equal(new ReadOnlySpan<byte>((void*)at, (int)Page).ToArray(), mine);
        }
    }

    private static unsafe void Build(HostRegion region, AddressSpace space, Cpu cpu, ulong s)
    {
        Assert.Equal(0, region.Map(s, 4 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 4 * Page, Page, Linux.PROT_NONE, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 6 * Page, 2 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 8 * Page, 2 * Page, Linux.PROT_READ | Linux.PROT_WRITE, Anon | Linux.MAP_FIXED));
        space.Map(s, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 4 * Page, Page, Protection.None, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 6 * Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 8 * Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        foreach (int page in new[] { 0, 1, 2, 3, 6, 7 })
        {
            for (int i = 0; i < (int)Page; i += 8)
            {
                ulong at = s + (ulong)page * Page + (ulong)i;
                long value = (long)(at * 0x9E3779B97F4A7C15UL);
                *(long*)at = value;
                cpu.Store(at, value);
            }
        }
        Assert.Equal(0, region.Protect(s + 6 * Page, 2 * Page, Linux.PROT_READ));
        space.Protect(s + 6 * Page, 2 * Page, Protection.Read);
    }

    private static unsafe long HostCopy(bool write, GuestSegment[] segments, byte[] buffer, out int errno)
    {
        Iovec* remote = stackalloc Iovec[segments.Length];
        for (int i = 0; i < segments.Length; i++)
        {
            remote[i] = new Iovec((nint)segments[i].Address, (nuint)segments[i].Length);
        }
        fixed (byte* local = buffer)
        {
            var localIov = new Iovec((nint)local, (nuint)buffer.Length);
            nint n = write
                ? LibC.ProcessVmWritev(LibC.Pid, &localIov, 1, remote, (nuint)segments.Length, 0)
                : LibC.ProcessVmReadv(LibC.Pid, &localIov, 1, remote, (nuint)segments.Length, 0);
            errno = n < 0 ? System.Runtime.InteropServices.Marshal.GetLastPInvokeError() : 0;
            return n;
        }
    }
}
