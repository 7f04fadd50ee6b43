using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// Bad input gets Linux's errno and changes nothing: each case runs on the host and on Faultline over the same
/// mappings, compares the errno, and checks that both sides' maps are unchanged.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class BadInputConformanceTests
{
    private const ulong Page = 4096;
    private const ulong TaskSize = 0x7FFF_FFFF_F000;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS;

    private readonly ITestOutputHelper _output;

    public BadInputConformanceTests(ITestOutputHelper output) => _output = output;

    public sealed record Case(string Name, Func<ulong, (Func<HostRegion, int> Host, Func<AddressSpace, Errno> Ours)> Make)
    {
        public override string ToString() => Name;
    }

    // Each case gets the region's start; the region holds: [0, 8) pages RW, a hole [8, 16), [16, 24) R.
    public static TheoryData<Case> Cases => new()
    {
        new("mmap length 0", s => (h => h.Map(s, 0, 3, Anon | Linux.MAP_FIXED), o => o.TryMap(s, 0, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _))),
        new("mmap fixed unaligned", s => (h => h.Map(s + 1, Page, 3, Anon | Linux.MAP_FIXED), o => o.TryMap(s + 1, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _))),
        new("mmap length overflows", s => (h => h.Map(s, ulong.MaxValue - 4095, 3, Anon), o => o.TryMap(s, ulong.MaxValue - 4095, Protection.ReadWrite, MapFlags.PrivateAnonymous, out _))),
        new("mmap fixed past TASK_SIZE", s => (h => h.Map(TaskSize - Page, 2 * Page, 3, Anon | Linux.MAP_FIXED), o => o.TryMap(TaskSize - Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _))),
        new("mmap without SHARED or PRIVATE", s => (h => h.Map(s, Page, 3, Linux.MAP_ANONYMOUS | Linux.MAP_FIXED), o => o.TryMap(s, Page, Protection.ReadWrite, MapFlags.Anonymous | MapFlags.Fixed, out _))),
        new("mmap SHARED_VALIDATE anonymous", s => (h => h.Map(s, Page, 3, Linux.MAP_SHARED_VALIDATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED), o => o.TryMap(s, Page, Protection.ReadWrite, MapFlags.SharedValidate | MapFlags.Anonymous | MapFlags.Fixed, out _))),
        new("mmap file without fd", s => (h => h.Map(s, Page, 3, Linux.MAP_PRIVATE | Linux.MAP_FIXED), o => o.TryMap(s, Page, Protection.ReadWrite, MapFlags.Private | MapFlags.Fixed, out _))),
        new("mmap FIXED_NOREPLACE over a mapping", s => (h => h.Map(s + 4 * Page, 8 * Page, 3, Anon | Linux.MAP_FIXED_NOREPLACE), o => o.TryMap(s + 4 * Page, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.FixedNoReplace, out _))),
        new("mmap FIXED_NOREPLACE unaligned", s => (h => h.Map(s + 9 * Page + 7, Page, 3, Anon | Linux.MAP_FIXED_NOREPLACE), o => o.TryMap(s + 9 * Page + 7, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.FixedNoReplace, out _))),
        new("munmap unaligned", s => (h => h.Unmap(s + 1, Page), o => o.TryUnmap(s + 1, Page))),
        new("munmap length 0", s => (h => h.Unmap(s, 0), o => o.TryUnmap(s, 0))),
        new("munmap beyond TASK_SIZE", s => (h => h.Unmap(TaskSize + Page, Page), o => o.TryUnmap(TaskSize + Page, Page))),
        new("munmap crossing TASK_SIZE", s => (h => h.Unmap(TaskSize - Page, 2 * Page), o => o.TryUnmap(TaskSize - Page, 2 * Page))),
        new("munmap of a hole", s => (h => h.Unmap(s + 9 * Page, 2 * Page), o => o.TryUnmap(s + 9 * Page, 2 * Page))),
        new("mprotect unaligned", s => (h => h.Protect(s + 1, Page, 1), o => o.TryProtect(s + 1, Page, Protection.Read))),
        new("mprotect unaligned length 0", s => (h => h.Protect(s + 1, 0, 1), o => o.TryProtect(s + 1, 0, Protection.Read))),
        new("mprotect length 0", s => (h => h.Protect(s, 0, 1), o => o.TryProtect(s, 0, Protection.Read))),
        new("mprotect unknown prot bit", s => (h => h.Protect(s, Page, 0x10), o => o.TryProtect(s, Page, (Protection)0x10))),
        new("mprotect PROT_GROWSDOWN on a normal VMA", s => (h => h.Protect(s, Page, Linux.PROT_READ | Linux.PROT_GROWSDOWN), o => o.TryProtect(s, Page, Protection.Read | Protection.GrowsDown))),
        new("mprotect PROT_GROWSUP", s => (h => h.Protect(s, Page, Linux.PROT_READ | Linux.PROT_GROWSUP), o => o.TryProtect(s, Page, Protection.Read | Protection.GrowsUp))),
        new("mprotect GROWSDOWN|GROWSUP", s => (h => h.Protect(s, Page, Linux.PROT_READ | Linux.PROT_GROWSDOWN | Linux.PROT_GROWSUP), o => o.TryProtect(s, Page, Protection.Read | Protection.GrowsDown | Protection.GrowsUp))),
        new("mprotect of an unmapped range", s => (h => h.Protect(s + 9 * Page, 2 * Page, 1), o => o.TryProtect(s + 9 * Page, 2 * Page, Protection.Read))),
        new("mprotect starting in a hole", s => (h => h.Protect(s + 12 * Page, 8 * Page, 1), o => o.TryProtect(s + 12 * Page, 8 * Page, Protection.Read))),
        new("mprotect length wraps", s => (h => h.Protect(s, ulong.MaxValue - 2 * Page, 1), o => o.TryProtect(s, ulong.MaxValue - 2 * Page, Protection.Read))),
        new("mprotect to the same protection", s => (h => h.Protect(s, 8 * Page, 3), o => o.TryProtect(s, 8 * Page, Protection.ReadWrite))),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BadInputGetsLinuxErrnoAndChangesNothing(Case testCase)
    {
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        Assert.Equal(0, region.Map(s, 8 * Page, 3, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 16 * Page, 8 * Page, 1, Anon | Linux.MAP_FIXED));
        space.Map(s, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 16 * Page, 8 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        string hostBefore = HostMapsText(region), oursBefore = space.GetMaps();

        (Func<HostRegion, int> host, Func<AddressSpace, Errno> ours) = testCase.Make(s);
        int hostErrno = host(region);
        Errno ourErrno = ours(space);

        Assert.Equal(hostErrno, (int)ourErrno);
        Assert.Equal(hostBefore, HostMapsText(region));
        Assert.Equal(oursBefore, space.GetMaps());
        Assert.Equal(hostBefore, string.Join("\n", space.GetMappings().Select(m => $"{m.Start:x}-{m.End:x} {m.Permissions}")));
    }

    [Fact]
    public void MprotectAcrossAHoleChangesNothingInFaultline()
    {
        // A documented, intended difference: Linux applies mprotect to the VMAs before a hole, then fails with
        // ENOMEM; Faultline validates the whole range first, so a failed call leaves the address space as it was.
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        Assert.Equal(0, region.Map(s, 8 * Page, 3, Anon | Linux.MAP_FIXED));
        space.Map(s, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        string oursBefore = space.GetMaps();

        Assert.Equal(Faultline.Host.Errno.ENOMEM, region.Protect(s, 12 * Page, 1));
        Assert.Equal(Errno.ENOMEM, space.TryProtect(s, 12 * Page, Protection.Read));
        Assert.Equal($"{s:x}-{s + 8 * Page:x} r--p", HostMapsText(region));
        Assert.Equal(oursBefore, space.GetMaps());
    }

    [Fact]
    public void FixedMappingBelowMmapMinAddrMatchesTheHostOrDiffersOnlyByCapSysRawio()
    {
        // Faultline models an unprivileged guest: with the host's vm.mmap_min_addr, mapping page 0 is EPERM. The host's
        // answer is probed (a PROT_NONE MAP_FIXED_NOREPLACE mapping of page 0, removed at once). Where the host allows
        // it and Faultline does not, the one documented reason is CAP_SYS_RAWIO (cap_mmap_addr), e.g. tests run as root.
        HostFacts host = HostFacts.Current;
        _output.WriteLine(host.Describe());
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MmapMinAddress = host.MmapMinAddress });
        Errno ours = space.TryMap(0, Page, Protection.None, MapFlags.PrivateAnonymous | MapFlags.NoReserve | MapFlags.FixedNoReplace, out _);
        Assert.Equal(host.MmapMinAddress > 0 ? Errno.EPERM : Errno.None, ours);
        if (host.FixedMapOfPageZeroErrno == Faultline.Host.Errno.OK && ours == Errno.EPERM)
        {
            Assert.True(host.HasCapSysRawio, "the host mapped below vm.mmap_min_addr without CAP_SYS_RAWIO");
            _output.WriteLine("host maps page 0 (CAP_SYS_RAWIO), Faultline answers EPERM: the documented difference");
        }
        else
        {
            Assert.Equal(host.FixedMapOfPageZeroErrno, (int)ours);
            _output.WriteLine($"host and Faultline agree: {Faultline.Host.Errno.Name(host.FixedMapOfPageZeroErrno)}");
        }
        Assert.Equal(ours == Errno.None ? 1 : 0, space.MapCount);
    }

    [Fact]
    public void WriteOnlyPagesAreReadableByACpuUnlikeProcessVmReadv()
    {
        // Documented: process_vm_readv checks VM_READ, so the host oracle reports a write-only page unreadable, while
        // an x86 CPU (which Faultline's Cpu models) can load from it: PTEs cannot express write-only.
        using var region = new HostRegion(8 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        Assert.Equal(0, region.Map(s, Page, Linux.PROT_WRITE, Anon | Linux.MAP_FIXED));
        space.Map(s, Page, Protection.Write, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        Assert.False(HostProbe.CanRead(s));
        Assert.Equal(AccessOutcome.Ok, cpu.TryLoad(s, out byte _));
    }

    private static string HostMapsText(HostRegion region) =>
        string.Join("\n", region.ReadMaps().Select(l => $"{l.Start:x}-{l.End:x} {l.Perms}"));
}
