using Faultline.Host;
using Faultline.Tests.Conformance.Stack;
using Xunit;
using Xunit.Abstractions;
using static Faultline.Tests.Conformance.Stack.StackScript;

namespace Faultline.Tests.Conformance;

/// <summary>
/// Stack expansion against the host kernel: the same script runs in the reference program <c>stack_oracle.c</c>
/// (real loads and stores, which grow a MAP_GROWSDOWN mapping on the host) and on a Faultline address space; every
/// step's result, and after each report the maps, smaps Rss, Locked and VmFlags, the present bit of every page and
/// VmLck, must agree.
/// </summary>
public class StackGrowthConformanceTests(ITestOutputHelper output)
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Region = HostRegion.DefaultBase;
    private const int RegionPages = 1024;
    private const int Anon = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED;
    private const int Stack = Anon | Linux.MAP_GROWSDOWN;
    private const int Rw = Linux.PROT_READ | Linux.PROT_WRITE;
    private const ulong Top = Region + 800 * Page;

    private static string Map(ulong at, int pages, int prot, int flags) => $"map {Hex(at)} {Hex((ulong)pages * Page)} {prot} {Hex((ulong)flags)}";
    private static string Write(ulong at, int value = 1) => $"write {Hex(at)} {value}";
    private static string Read(ulong at) => $"read {Hex(at)}";

    public static TheoryData<string> Scenarios => new(s_scenarios.Keys);

    private static readonly Dictionary<string, StackScript> s_scenarios = new StackScript[]
    {
        Script("one page below, then far below", 8 << 20, null,
            Map(Top, 4, Rw, Stack), Write(Top - 8, 42), "report", Read(Top - 8), Write(Top - 100 * Page + 123, 7), "report",
            Read(Top - 50 * Page), "report"),
        Script("the guard gap of an accessible mapping below", 8 << 20, null,
            Map(Top - 400 * Page, 4, Linux.PROT_READ, Anon), Map(Top, 4, Rw, Stack),
            Write(Top - 400 * Page + 4 * Page + 255 * Page + 16), "report",
            Write(Top - 400 * Page + 4 * Page + 256 * Page), "report", Write(Top - 145 * Page), "report"),
        Script("an inaccessible or grows-down mapping below keeps no gap", 8 << 20, null,
            Map(Top - 68 * Page, 4, Linux.PROT_NONE, Anon), Map(Top, 4, Rw, Stack), Write(Top - 64 * Page), "report",
            Write(Top - 65 * Page), "report",
            Map(Top + 100 * Page, 4, Rw, Stack), Map(Top + 108 * Page, 4, Rw, Stack), Write(Top + 104 * Page), "report",
            Protect(Top + 102 * Page, 1, Linux.PROT_READ), "report", Write(Top + 103 * Page), "report"),
        Script("the stack limit", 16 * Page, null,
            Map(Top, 8, Rw, Stack), Write(Top - 9 * Page), "report", Write(Top - 8 * Page), "report", Write(Top - 8 * Page - 1), "report"),
        Script("a read-only stack grows, then refuses the write", 8 << 20, null,
            Map(Top, 4, Linux.PROT_READ, Stack), Write(Top - 3 * Page), "report", Read(Top - 5 * Page), "report",
            Map(Top + 50 * Page, 4, Linux.PROT_NONE, Stack), Read(Top + 48 * Page), "report"),
        Script("part of a grown stack unmapped, the upper part grows into the hole", 8 << 20, null,
            Map(Top, 2, Rw, Stack), Write(Top - 8 * Page, 1), Write(Top - 2 * Page, 2), $"munmap {Hex(Top - 6 * Page)} {Hex(2 * Page)}", "report",
            Read(Top - 6 * Page), "report", Read(Top - 8 * Page), Read(Top - 2 * Page), Write(Top - 9 * Page), "report"),
        Script("mprotect PROT_GROWSDOWN reaches the grown start", 8 << 20, null,
            Map(Top, 2, Rw, Stack), Write(Top - 4 * Page), Protect(Top + Page, 1, Linux.PROT_READ | Linux.PROT_GROWSDOWN), "report",
            Write(Top - 4 * Page), Read(Top - 6 * Page), "report"),
        Script("a locked stack counts its growth against RLIMIT_MEMLOCK", 8 << 20, 16 * Page,
            Map(Top, 4, Rw, Stack | Linux.MAP_LOCKED), "report", Write(Top - 8 * Page), "report", Write(Top - 13 * Page), "report",
            Write(Top - 12 * Page), "report", $"munmap {Hex(Top - 12 * Page)} {Hex(16 * Page)}", "report"),
        Script("unlimited RLIMIT_STACK", ulong.MaxValue, null,
            Map(Top, 1, Rw, Stack), Write(Top - 700 * Page), "report"),
    }.ToDictionary(s => s.Name);

    private static string Protect(ulong at, int pages, int prot) => $"protect {Hex(at)} {Hex((ulong)pages * Page)} {prot}";

    private static StackScript Script(string name, ulong stackLimit, ulong? lockLimit, params string[] steps) =>
        new(name, Region, RegionPages * Page, stackLimit, lockLimit, steps);

    [Theory]
    [MemberData(nameof(Scenarios))]
    public void AScenarioEndsAsOnTheHost(string name) => AssertSame(s_scenarios[name]);

    [Fact]
    public void GrowthBelowMmapMinAddrIsRefusedAsOnTheHost()
    {
        ulong min = KernelStackRunner.ExpansionMinAddress;
        output.WriteLine($"host: vm.mmap_min_addr {HostFacts.Current.MmapMinAddress:x}, stack expansion stops at {min:x}");
        Assert.True(min >= HostFacts.Current.MmapMinAddress);
        AssertSame(new StackScript("mmap_min_addr", min, 16 * Page, 8 << 20, null,
            [Map(min + 2 * Page, 1, Rw, Stack), Write(min - Page), "report", Write(min), "report"]));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(6)]
    public void ARandomSequenceEndsAsOnTheHost(int seed) =>
        AssertSame(StackScriptGenerator.Generate(seed, Region, 512, 120, 64 * Page, seed % 2 == 0 ? 24 * Page : null));

    [Fact]
    public void TheComparisonCatchesADifferentStackLimit()
    {
        // The same script under Linux's default 8 MiB on our side: the growth the host refuses succeeds here.
        StackScript host = s_scenarios["the stack limit"];
        string? difference = FirstDifference(KernelStackRunner.Run(host), FaultlineStackRunner.Run(host with { StackLimit = 8 << 20 }));
        Assert.Equal("1 write SEGV_MAPERR / 1 write ok", difference);
    }

    private static string? FirstDifference(string[] host, string[] ours) =>
        host.Zip(ours).Where(p => p.First != p.Second).Select(p => $"{p.First} / {p.Second}").FirstOrDefault();

    private void AssertSame(StackScript script)
    {
        string[] host = KernelStackRunner.Run(script);
        string[] ours = FaultlineStackRunner.Run(script);
        output.WriteLine($"{script.Name}: {host.Length} host lines, {script.Steps.Count} steps");
        for (int i = 0; i < Math.Min(host.Length, ours.Length); i++)
        {
            if (host[i] != ours[i])
            {
                string step = script.Steps[int.Parse(host[i].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)];
                string history = string.Join("\n", script.Steps.Take(int.Parse(host[i].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture) + 1));
                Assert.Fail($"{script.Name}: step '{step}' differs\nhost: {Clip(host[i])}\nours: {Clip(ours[i])}\nscript so far:\n{history}");
            }
        }
        Assert.Equal(host.Length, ours.Length);
    }

    // A present line is one character a page: show where it starts to differ rather than all of it.
    private static string Clip(string line) => line.Length > 300 ? line[..300] + "…" : line;
}
