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
        new("mmap fixed unaligned past the top", s => (h => h.Map(TaskSize - Page + 1, Page, 3, Anon | Linux.MAP_FIXED), o => o.TryMap(TaskSize - Page + 1, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _))),
        new("mmap FIXED_NOREPLACE unaligned past the top", s => (h => h.Map(TaskSize + 7, Page, 3, Anon | Linux.MAP_FIXED_NOREPLACE), o => o.TryMap(TaskSize + 7, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.FixedNoReplace, out _))),
        new("mmap MAP_HUGETLB hinted", s => (h => h.Map(0, Page, 3, Anon | Linux.MAP_HUGETLB), o => o.TryMap(0, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.HugeTlb, out _))),
        new("mmap MAP_HUGETLB length 0", s => (h => h.Map(0, 0, 3, Anon | Linux.MAP_HUGETLB), o => o.TryMap(0, 0, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.HugeTlb, out _))),
        new("mmap MAP_HUGETLB unaligned", s => (h => h.Map(s + 9 * Page, Page, 3, Anon | Linux.MAP_FIXED | Linux.MAP_HUGETLB), o => o.TryMap(s + 9 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.HugeTlb, out _))),
        new("mprotect length 0 with unknown prot bits", s => (h => h.Protect(s, 0, 0x10), o => o.TryProtect(s, 0, (Protection)0x10))),
        new("mprotect length wraps with unknown prot bits", s => (h => h.Protect(s, ulong.MaxValue - 2 * Page, 0x10), o => o.TryProtect(s, ulong.MaxValue - 2 * Page, (Protection)0x10))),
        new("mprotect GROWSDOWN starting in a hole before a normal VMA", s => (h => h.Protect(s + 12 * Page, 8 * Page, Linux.PROT_READ | Linux.PROT_GROWSDOWN), o => o.TryProtect(s + 12 * Page, 8 * Page, Protection.Read | Protection.GrowsDown))),
        new("mprotect GROWSDOWN of a hole only", s => (h => h.Protect(s + 9 * Page, 2 * Page, Linux.PROT_READ | Linux.PROT_GROWSDOWN), o => o.TryProtect(s + 9 * Page, 2 * Page, Protection.Read | Protection.GrowsDown))),
        new("madvise unknown advice", s => (h => h.Advise(s, Page, 99), o => o.TryAdvise(s, Page, (Advice)99))),
        new("madvise unaligned", s => (h => h.Advise(s + 1, Page, Linux.MADV_DONTNEED), o => o.TryAdvise(s + 1, Page, Advice.DontNeed))),
        new("madvise length 0 of a hole", s => (h => h.Advise(s + 9 * Page, 0, Linux.MADV_DONTNEED), o => o.TryAdvise(s + 9 * Page, 0, Advice.DontNeed))),
        new("madvise length wraps", s => (h => h.Advise(s, ulong.MaxValue - 10, Linux.MADV_DONTNEED), o => o.TryAdvise(s, ulong.MaxValue - 10, Advice.DontNeed))),
        new("madvise of a hole", s => (h => h.Advise(s + 9 * Page, 2 * Page, Linux.MADV_DONTNEED), o => o.TryAdvise(s + 9 * Page, 2 * Page, Advice.DontNeed))),
        new("madvise REMOVE of private anonymous memory", s => (h => h.Advise(s, Page, Linux.MADV_REMOVE), o => o.TryAdvise(s, Page, Advice.Remove))),
        new("madvise POPULATE_WRITE of read-only memory", s => (h => h.Advise(s + 16 * Page, Page, 23), o => o.TryAdvise(s + 16 * Page, Page, Advice.PopulateWrite))),
        new("madvise POPULATE_READ of a hole", s => (h => h.Advise(s + 9 * Page, Page, 22), o => o.TryAdvise(s + 9 * Page, Page, Advice.PopulateRead))),
        new("madvise POPULATE_READ into a hole", s => (h => h.Advise(s + 8 * Page, Page, 22), o => o.TryAdvise(s + 8 * Page, Page, Advice.PopulateRead))),
        new("madvise WILLNEED of anonymous memory", s => (h => h.Advise(s, Page, Linux.MADV_WILLNEED), o => o.TryAdvise(s, Page, Advice.WillNeed))),
        new("madvise COLD", s => (h => h.Advise(s, 8 * Page, 20), o => o.TryAdvise(s, 8 * Page, Advice.Cold))),
        new("mincore unaligned", s => (h => h.Mincore(s + 1, Page, new byte[2]), o => o.Mincore(s + 1, Page, new byte[2]))),
        new("mincore of a hole", s => (h => h.Mincore(s + 9 * Page, Page, new byte[1]), o => o.Mincore(s + 9 * Page, Page, new byte[1]))),
        new("mincore into a hole", s => (h => h.Mincore(s + 7 * Page, 2 * Page, new byte[2]), o => o.Mincore(s + 7 * Page, 2 * Page, new byte[2]))),
        new("mincore length 0", s => (h => h.Mincore(s + 9 * Page, 0, new byte[1]), o => o.Mincore(s + 9 * Page, 0, new byte[1]))),
        new("mincore past TASK_SIZE", s => (h => h.Mincore(TaskSize - Page, 2 * Page, new byte[2]), o => o.Mincore(TaskSize - Page, 2 * Page, new byte[2]))),
        new("msync unknown flag", s => (h => h.Msync(s, Page, 8), o => o.Msync(s, Page, (SyncFlags)8))),
        new("msync ASYNC|SYNC", s => (h => h.Msync(s, Page, 5), o => o.Msync(s, Page, SyncFlags.Async | SyncFlags.Sync))),
        new("msync unaligned", s => (h => h.Msync(s + 1, Page, 4), o => o.Msync(s + 1, Page, SyncFlags.Sync))),
        new("msync of a hole", s => (h => h.Msync(s + 9 * Page, Page, 4), o => o.Msync(s + 9 * Page, Page, SyncFlags.Sync))),
        new("msync ASYNC across a hole", s => (h => h.Msync(s, 20 * Page, 1), o => o.Msync(s, 20 * Page, SyncFlags.Async))),
        new("msync SYNC across a hole", s => (h => h.Msync(s, 20 * Page, 4), o => o.Msync(s, 20 * Page, SyncFlags.Sync))),
        new("msync INVALIDATE", s => (h => h.Msync(s, 8 * Page, 2), o => o.Msync(s, 8 * Page, SyncFlags.Invalidate))),
        new("msync no flags", s => (h => h.Msync(s, 8 * Page, 0), o => o.Msync(s, 8 * Page, SyncFlags.None))),
        new("mlock of a hole", s => (h => h.Lock(s + 9 * Page, Page), o => o.Lock(s + 9 * Page, Page))),
        new("mlock starting in a hole", s => (h => h.Lock(s + 12 * Page, 8 * Page), o => o.Lock(s + 12 * Page, 8 * Page))),
        new("mlock length 0", s => (h => h.Lock(s + 9 * Page, 0), o => o.Lock(s + 9 * Page, 0))),
        new("mlock2 unknown flag", s => (h => h.Lock(s, Page, 2), o => o.Lock(s, Page, (MemoryLockFlags)2))),
        new("munlock of a hole", s => (h => h.Unlock(s + 9 * Page, Page), o => o.Unlock(s + 9 * Page, Page))),
        new("munlock unaligned of unlocked memory", s => (h => h.Unlock(s + 5, Page), o => o.Unlock(s + 5, Page))),
    };

    // mseal exists from Linux 6.10 on; each case runs only where the host answers something other than ENOSYS.
    public static TheoryData<Case> SealCases => new()
    {
        new("mseal flags", s => (h => h.Seal(s, Page, 1), o => o.Seal(s, Page, 1))),
        new("mseal unaligned", s => (h => h.Seal(s + 1, Page), o => o.Seal(s + 1, Page))),
        new("mseal length 0", s => (h => h.Seal(s, 0), o => o.Seal(s, 0))),
        new("mseal length wraps", s => (h => h.Seal(s, ulong.MaxValue - 10), o => o.Seal(s, ulong.MaxValue - 10))),
        new("mseal of a hole", s => (h => h.Seal(s + 9 * Page, Page), o => o.Seal(s + 9 * Page, Page))),
        new("mseal across a hole", s => (h => h.Seal(s, 20 * Page), o => o.Seal(s, 20 * Page))),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void BadInputGetsLinuxErrnoAndChangesNothing(Case testCase) => RunCase(testCase);

    [Theory]
    [MemberData(nameof(SealCases))]
    public void BadSealInputGetsLinuxErrnoAndChangesNothing(Case testCase)
    {
        if (LibC.MsealErrno(0, 0) == Faultline.Host.Errno.ENOSYS)
        {
            _output.WriteLine("the host kernel has no mseal (before 6.10): not compared");
            return;
        }
        RunCase(testCase);
    }

    private static void RunCase(Case testCase)
    {
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 16 << 20,
            CapIpcLock = HostFacts.Current.HasCapIpcLock,
            MemoryLockLimit = HostFacts.Current.MemoryLockLimit,
        });
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
        Assert.Equal(hostBefore, OursMapsText(space));
    }

    [Fact]
    public void MprotectAcrossAHoleChangesTheVmasBeforeItThenFailsAsLinuxDoes()
    {
        // Linux applies mprotect to the VMAs before a hole, then fails with ENOMEM; Faultline does the same.
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        Assert.Equal(0, region.Map(s, 4 * Page, 3, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 4 * Page, 4 * Page, 1, Anon | Linux.MAP_FIXED));
        Assert.Equal(0, region.Map(s + 10 * Page, 4 * Page, 3, Anon | Linux.MAP_FIXED));
        space.Map(s, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 4 * Page, 4 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Map(s + 10 * Page, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);

        Assert.Equal(Faultline.Host.Errno.ENOMEM, region.Protect(s + 2 * Page, 12 * Page, Linux.PROT_READ | Linux.PROT_EXEC));
        Assert.Equal(Errno.ENOMEM, space.TryProtect(s + 2 * Page, 12 * Page, Protection.Read | Protection.Execute));

        string host = HostMapsText(region);
        Assert.Equal($"{s:x}-{s + 2 * Page:x} rw-p\n{s + 2 * Page:x}-{s + 8 * Page:x} r-xp\n{s + 10 * Page:x}-{s + 14 * Page:x} rw-p", host);
        Assert.Equal(host, OursMapsText(space));
    }

    [Theory]
    [InlineData(12, 8)]
    [InlineData(17, 2)]
    public void MprotectGrowsDownStartsAtTheFirstVmaInTheRangeAsLinuxDoes(int firstPage, int pages)
    {
        // PROT_GROWSDOWN from a hole: the walk starts at the first VMA of the range and extends to its start.
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        Assert.Equal(0, region.Map(s + 16 * Page, 8 * Page, 3, Anon | Linux.MAP_FIXED | Linux.MAP_GROWSDOWN));
        space.Map(s + 16 * Page, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.GrowsDown);
        ulong address = s + (ulong)firstPage * Page, length = (ulong)pages * Page;

        Assert.Equal(0, region.Protect(address, length, Linux.PROT_READ | Linux.PROT_GROWSDOWN));
        Assert.Equal(Errno.None, space.TryProtect(address, length, Protection.Read | Protection.GrowsDown));
        Assert.Equal(HostMapsText(region), OursMapsText(space));
    }

    [Fact]
    public void MadviseAcrossAHoleAppliesToEveryVmaAndFailsWithEnomemAsLinuxDoes()
    {
        // Unlike mprotect, madvise goes on past a hole: the VMAs after it are advised too, and the answer is ENOMEM.
        using var region = new HostRegion(32 * Page);
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage });
        using Cpu cpu = space.AttachCpu();
        ulong s = region.Start;
        Assert.Equal(0, region.Unmap(s, region.Size));
        Assert.Equal(0, region.Map(s, 4 * Page, 3, Anon | Linux.MAP_FIXED | Linux.MAP_POPULATE));
        Assert.Equal(0, region.Map(s + 6 * Page, 4 * Page, 3, Anon | Linux.MAP_FIXED | Linux.MAP_POPULATE));
        space.Map(s, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);
        space.Map(s + 6 * Page, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.Populate);

        Assert.Equal(Faultline.Host.Errno.ENOMEM, region.Advise(s + Page, 8 * Page, Linux.MADV_DONTNEED));
        Assert.Equal(Errno.ENOMEM, space.TryAdvise(s + Page, 8 * Page, Advice.DontNeed));

        bool[] host = HostResidency(s, 10), ours = [.. Enumerable.Range(0, 10).Select(i => space.IsResident(s + (ulong)i * Page))];
        Assert.Equal([true, false, false, false, false, false, false, false, false, true], host);
        Assert.Equal(host, ours);
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

    private static string OursMapsText(AddressSpace space) =>
        string.Join("\n", space.GetMappings().Select(m => $"{m.Start:x}-{m.End:x} {m.Permissions}"));

    private static bool[] HostResidency(ulong start, int pages)
    {
        var entries = new ulong[pages];
        HostPagemap.ReadEntries(start, entries);
        return [.. entries.Select(e => (e & HostPagemap.PM_PRESENT) != 0)];
    }
}
