using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// The host kernel is the oracle for fork(): the same script runs with real fork() (<see cref="KernelForkRunner"/>)
/// and with <see cref="AddressSpace.Fork"/> (<see cref="FaultlineForkRunner"/>), and every process's maps, access
/// outcomes, bytes, smaps fields (Rss, Anonymous, Shared_Clean, Shared_Dirty, Private_Clean, Private_Dirty, Pss) and
/// the residency of sampled pages must agree at every step. Faultline maps the zero page on a read fault exactly when the probed host does. A
/// failure names the seed and step; set FAULTLINE_FORK_SEED to replay one seed on every path.
/// </summary>
public sealed class ForkOracleTests
{
    private const ulong Page = Linux.PAGE_SIZE;
    private const int ReadWrite = Linux.PROT_READ | Linux.PROT_WRITE;
    private const int SequencesPerPath = 70;
    private const int BaseSeed = 20261204;
    private const int ReportedDifferences = 25;
    private const int KernelRunsInFlight = 4;

    private readonly ITestOutputHelper _output;

    public ForkOracleTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static ulong A => KernelForkRunner.RegionBase;

    [Theory]
    [MemberData(nameof(Paths))]
    public void RandomForkSequencesMatchTheHostKernel(FaultPath path)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        string? replay = Environment.GetEnvironmentVariable("FAULTLINE_FORK_SEED");
        int first = BaseSeed + (1000 * (int)path);
        IEnumerable<int> seeds = replay is null ? Enumerable.Range(first, SequencesPerPath) : [int.Parse(replay)];
        var differences = new List<string>();
        var failingSeeds = new List<int>();
        int sequences = 0, steps = 0;
        long handled = 0, cowFaults = 0, cowReuses = 0;
        var adviseErrnos = new SortedDictionary<string, int>();
        var forkFlagsSeen = new SortedDictionary<string, int>();
        // The reference program mostly waits for its processes to wake each other: several run at once while this
        // thread runs Faultline's side in seed order.
        var kernelRuns = seeds.AsParallel().AsOrdered().WithDegreeOfParallelism(KernelRunsInFlight)
            .Select(seed => (Seed: seed, Script: ForkScriptGenerator.Generate(seed)))
            .Select(s => (s.Seed, s.Script, Kernel: KernelForkRunner.Run(s.Script)));
        foreach ((int seed, ForkScript script, ForkRun kernel) in kernelRuns)
        {
            ForkRun ours = FaultlineForkRunner.Run(script, path, HostFacts.Current.ReadFaultMapsZeroPage);
            List<string> found = ForkComparer.Compare(script, kernel, ours);
            if (found.Count > 0)
            {
                failingSeeds.Add(seed);
                differences.AddRange(found);
            }
            sequences++;
            steps += script.Steps.Count;
            handled += long.Parse(ours.Facts[FaultlineForkRunner.HandledOnPath]);
            cowFaults += long.Parse(ours.Facts[FaultlineForkRunner.CowFault]);
            cowReuses += long.Parse(ours.Facts[FaultlineForkRunner.CowReuse]);
            foreach (ForkObservation o in kernel.Observations.Where(o => o.Kind is "advise" || (o.Kind is "vmflags" && o.Value != "-")))
            {
                SortedDictionary<string, int> tally = o.Kind == "advise" ? adviseErrnos : forkFlagsSeen;
                tally[o.Value] = tally.GetValueOrDefault(o.Value) + 1;
            }
        }
        _output.WriteLine($"{path}: {sequences} sequences, {steps} steps, {differences.Count} differences in {failingSeeds.Count} seeds; " +
            $"faults handled on the path {handled}, cow_fault {cowFaults}, cow_reuse {cowReuses}; madvise errnos " +
            string.Join(", ", adviseErrnos.Select(e => $"{e.Key}: {e.Value}")) + "; VMAs reported with fork flags " +
            string.Join(", ", forkFlagsSeen.Select(e => $"{e.Key}: {e.Value}")));
        foreach (string difference in differences)
        {
            _output.WriteLine(difference);
        }
        string shrunk = failingSeeds.Count == 0 ? string.Empty : Shrunk(failingSeeds[0], path);
        Assert.True(differences.Count == 0,
            $"{differences.Count} differences in seeds {string.Join(", ", failingSeeds)} (replay one with FAULTLINE_FORK_SEED=N):\n" +
            string.Join("\n", differences.Take(ReportedDifferences)) + shrunk);
        if (replay is null)
        {
            Assert.True(handled > 0, $"no fault was handled on the {path} path");
            Assert.True(cowFaults > 0, "no copy-on-write fault copied a page");
            // The advice must reach both outcomes and leave both flags on VMAs that reports (forks' children too) show.
            Assert.True(adviseErrnos.ContainsKey("0") && adviseErrnos.ContainsKey("12"), "madvise never succeeded or never met a hole");
            Assert.True(forkFlagsSeen.Keys.Any(f => f.Contains("dc")) && forkFlagsSeen.Keys.Any(f => f.Contains("wf")),
                "no report showed a VM_DONTCOPY or VM_WIPEONFORK VMA");
        }
    }

    [Fact]
    public void ForkThenWriteInTheChildLeavesTheParentUnchanged()
    {
        var script = new ForkScript(A, 16 * Page, "write in the child")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A + 16, 7)
            .Write(0, A + Page + 5, 8)
            .Fork(0)
            .Write(1, A + 16, 9)
            .Report(A + 16, A + Page + 5);

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal("7", kernel.Single(5, 0, "value", $"{A + 16:x}").Value);
        Assert.Equal("9", kernel.Single(5, 1, "value", $"{A + 16:x}").Value);
        Assert.Equal("8", kernel.Single(5, 1, "value", $"{A + Page + 5:x}").Value);
    }

    [Fact]
    public void ForkThenWriteInTheParentLeavesTheChildUnchanged()
    {
        var script = new ForkScript(A, 16 * Page, "write in the parent")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A + 16, 7)
            .Fork(0)
            .Write(0, A + 16, 9)
            .Write(0, A + (2 * Page), 3)
            .Report(A + 16, A + (2 * Page));

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal("9", kernel.Single(5, 0, "value", $"{A + 16:x}").Value);
        Assert.Equal("7", kernel.Single(5, 1, "value", $"{A + 16:x}").Value);
        Assert.Equal("0", kernel.Single(5, 1, "value", $"{A + (2 * Page):x}").Value);
    }

    [Fact]
    public void AGrandchildChainKeepsEveryGenerationsBytes()
    {
        var script = new ForkScript(A, 16 * Page, "grandchild chain")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A, 1)
            .Write(0, A + Page, 1)
            .Fork(0)
            .Write(1, A, 2)
            .Fork(1)
            .Write(2, A, 3)
            .Report(A, A + Page)
            .Exit(1)
            .Write(2, A + Page, 4)
            .Write(0, A + Page, 5)
            .Report(A, A + Page);

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal(new[] { "1", "2", "3" }, new[] { 0, 1, 2 }.Select(p => kernel.Single(7, p, "value", $"{A:x}").Value));
        Assert.Equal(new[] { "5", "4" }, new[] { 0, 2 }.Select(p => kernel.Single(11, p, "value", $"{A + Page:x}").Value));
    }

    [Fact]
    public void MunmapInTheParentLeavesTheChildIntact()
    {
        var script = new ForkScript(A, 16 * Page, "munmap in the parent")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A + Page, 7)
            .Fork(0)
            .Munmap(0, A, 2 * Page)
            .Report(A + Page)
            .Write(1, A + Page, 8)
            .Report(A + Page);

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal("SEGV_MAPERR", kernel.Single(4, 0, "value", $"{A + Page:x}").Value);
        Assert.Equal("7", kernel.Single(4, 1, "value", $"{A + Page:x}").Value);
        Assert.Equal("8", kernel.Single(6, 1, "value", $"{A + Page:x}").Value);
    }

    [Fact]
    public void AReadOnlyRegionForkedThenMadeWritableCopiesOnWrite()
    {
        var script = new ForkScript(A, 16 * Page, "read-only fork, then mprotect")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A + 16, 7)
            .Read(0, A + (2 * Page))
            .Protect(0, A, 4 * Page, Linux.PROT_READ)
            .Fork(0)
            .Write(1, A + 16, 9)
            .Protect(1, A, 4 * Page, ReadWrite)
            .Write(1, A + 16, 9)
            .Report(A + 16)
            .Protect(0, A, 4 * Page, ReadWrite)
            .Write(0, A + (2 * Page), 6)
            .Report(A + 16, A + (2 * Page));

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal("SEGV_ACCERR", kernel.Single(5, 1, "write", $"{A + 16:x}").Value);
        Assert.Equal("ok", kernel.Single(7, 1, "write", $"{A + 16:x}").Value);
        Assert.Equal("7", kernel.Single(11, 0, "value", $"{A + 16:x}").Value);
        Assert.Equal("9", kernel.Single(11, 1, "value", $"{A + 16:x}").Value);
        Assert.Equal("0", kernel.Single(11, 1, "value", $"{A + (2 * Page):x}").Value);
    }

    [Fact]
    public void AnInheritedVmaWithAnAnonVmaMergesWithNoNewNeighbour()
    {
        // A VMA whose anon_vma chain came through fork (vma_had_uncowed_parents: an anon_vma and a chain that is not
        // singular) never merges with a neighbour that has no anon_vma, by mmap or by mprotect, even after the parent
        // exited; the parent's own VMA (a singular chain) does.
        var script = new ForkScript(A, 16 * Page, "inherited anon_vma and merging")
            .Map(0, A, 4 * Page, ReadWrite)
            .Read(0, A)
            .Fork(0)
            .Map(0, A + (4 * Page), 2 * Page, ReadWrite)
            .Map(1, A + (4 * Page), 2 * Page, ReadWrite)
            .Report()
            .Exit(0)
            .Map(1, A + (4 * Page), 2 * Page, Linux.PROT_NONE)
            .Protect(1, A + (4 * Page), 2 * Page, ReadWrite)
            .Report();

        ForkRun kernel = KernelForkRunner.Run(script);
        string rest = $"{A + (6 * Page):x}-{A + (16 * Page):x}:---p";
        Assert.Equal($"{A:x}-{A + (6 * Page):x}:rw-p,{rest}", kernel.Single(5, 0, "maps", "-").Value);
        string separate = $"{A:x}-{A + (4 * Page):x}:rw-p,{A + (4 * Page):x}-{A + (6 * Page):x}:rw-p,{rest}";
        Assert.Equal(separate, kernel.Single(5, 1, "maps", "-").Value);
        Assert.Equal(separate, kernel.Single(9, 1, "maps", "-").Value);
        CompareOnEveryPath(script);
    }

    [Fact]
    public void AVmaFaultingNextToAnInheritedVmaGetsAnAnonVmaOfItsOwn()
    {
        // find_mergeable_anon_vma reuses a neighbour's anon_vma only when the neighbour's chain is singular
        // (reusable_anon_vma): next to an inherited VMA the new one gets its own, so making the flags equal again later
        // still leaves two VMAs.
        var script = new ForkScript(A, 16 * Page, "anon_vma reuse next to an inherited VMA")
            .Map(0, A, 4 * Page, ReadWrite)
            .Read(0, A)
            .Fork(0)
            .Map(1, A + (4 * Page), 2 * Page, ReadWrite)
            .Read(1, A + (4 * Page))
            .Protect(1, A + (4 * Page), 2 * Page, Linux.PROT_READ)
            .Protect(1, A + (4 * Page), 2 * Page, ReadWrite)
            .Report();

        ForkRun kernel = KernelForkRunner.Run(script);
        Assert.Equal($"{A:x}-{A + (4 * Page):x}:rw-p,{A + (4 * Page):x}-{A + (6 * Page):x}:rw-p,{A + (6 * Page):x}-{A + (16 * Page):x}:---p",
            kernel.Single(7, 1, "maps", "-").Value);
        CompareOnEveryPath(script);
    }

    [Fact]
    public void AMadvDontForkRangeIsMissingFromTheChild()
    {
        // VM_DONTCOPY: dup_mmap skips the VMA split off for the range, so the child faults SEGV_MAPERR there while the
        // parent keeps its bytes and the flag.
        var script = new ForkScript(A, 16 * Page, "MADV_DONTFORK, then fork")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A, 7)
            .Write(0, A + (2 * Page), 8)
            .Advise(0, A + Page, 2 * Page, Advice.DontFork)
            .Fork(0)
            .Read(1, A + (2 * Page))
            .Write(1, A, 9)
            .Report(A, A + (2 * Page));

        ForkRun kernel = CompareOnEveryPath(script);

        Assert.Equal("0", kernel.Single(3, 0, "advise", $"{A + Page:x}+{2 * Page:x}").Value);
        Assert.Equal("SEGV_MAPERR", kernel.Single(5, 1, "read", $"{A + (2 * Page):x}").Value);
        string rest = $"{A + (4 * Page):x}-{A + (16 * Page):x}:---p";
        Assert.Equal($"{A:x}-{A + Page:x}:rw-p,{A + (3 * Page):x}-{A + (4 * Page):x}:rw-p,{rest}", kernel.Single(7, 1, "maps", "-").Value);
        Assert.Equal("dc", kernel.Single(7, 0, "vmflags", $"{A + Page:x}-{A + (3 * Page):x}").Value);
        Assert.Equal("8", kernel.Single(7, 0, "value", $"{A + (2 * Page):x}").Value);
        Assert.Equal("7", kernel.Single(7, 0, "value", $"{A:x}").Value);
        Assert.Equal("9", kernel.Single(7, 1, "value", $"{A:x}").Value);
    }

    [Fact]
    public void AMadvWipeOnForkRangeIsZeroInEveryGenerationOfChildren()
    {
        // VM_WIPEONFORK: the child's copy of the VMA starts empty (no anon_vma, no pages) and keeps the flag, so the
        // child's own child finds it wiped again; the pages outside the range are copied as usual.
        var script = new ForkScript(A, 16 * Page, "MADV_WIPEONFORK, fork, fork from the child")
            .Map(0, A, 4 * Page, ReadWrite)
            .Write(0, A, 7)
            .Write(0, A + Page, 8)
            .Advise(0, A, Page, Advice.WipeOnFork)
            .Fork(0)
            .Report(A, A + Page)
            .Write(1, A, 9)
            .Fork(1)
            .Report(A, A + Page);

        ForkRun kernel = CompareOnEveryPath(script);

        string wiped = $"{A:x}-{A + Page:x}";
        Assert.Equal(new[] { "7", "0" }, new[] { 0, 1 }.Select(p => kernel.Single(5, p, "value", $"{A:x}").Value));
        Assert.Equal("8", kernel.Single(5, 1, "value", $"{A + Page:x}").Value);
        Assert.Equal("wf", kernel.Single(5, 1, "vmflags", wiped).Value);
        Assert.Equal(new[] { "7", "9", "0" }, new[] { 0, 1, 2 }.Select(p => kernel.Single(8, p, "value", $"{A:x}").Value));
        Assert.Equal("8", kernel.Single(8, 2, "value", $"{A + Page:x}").Value);
        Assert.Equal("wf", kernel.Single(8, 2, "vmflags", wiped).Value);
    }

    [Fact]
    public void MprotectLeavesTheChargeOfAWipedVmaWhoseProtectionItKeeps()
    {
        // The child's wiped VMAs have no anon_vma. mprotect_fixup returns at newflags == oldflags before it looks at
        // VM_ACCOUNT, so the read-only one keeps its charge, while the one turning read-only gives it back (no
        // anon_vma): their flags differ and the two stay apart.
        var script = new ForkScript(A, 16 * Page, "mprotect over wiped VMAs in the child")
            .Map(0, A, 2 * Page, ReadWrite)
            .Write(0, A, 7)
            .Protect(0, A, Page, Linux.PROT_READ)
            .Advise(0, A, 2 * Page, Advice.WipeOnFork)
            .Fork(0)
            .Protect(1, A, 2 * Page, Linux.PROT_READ)
            .Report(A);

        ForkRun kernel = KernelForkRunner.Run(script);
        Assert.Equal($"{A:x}-{A + Page:x}:r--p,{A + Page:x}-{A + (2 * Page):x}:r--p,{A + (2 * Page):x}-{A + (16 * Page):x}:---p",
            kernel.Single(6, 1, "maps", "-").Value);
        CompareOnEveryPath(script);
    }

    [Fact]
    public void TheComparisonSeesTheWrongReadFaultMode()
    {
        // Faultline set to the other read-fault mode than the host's: read pages count in Rss on one side only.
        var script = new ForkScript(A, 16 * Page, "wrong read-fault mode")
            .Map(0, A, 4 * Page, ReadWrite)
            .Read(0, A + Page)
            .Fork(0)
            .Report(A + (2 * Page));

        List<string> differences = ForkComparer.Compare(script, KernelForkRunner.Run(script),
            FaultlineForkRunner.Run(script, FaultPath.MmapLock, !HostFacts.Current.ReadFaultMapsZeroPage));

        _output.WriteLine(string.Join("\n", differences));
        Assert.Contains(differences, d => d.Contains($"process 1, smaps {A:x}-{A + (4 * Page):x}:Rss", StringComparison.Ordinal));
    }

    // The first failing seed's script shrunk to the steps the failure needs, with its differences.
    private static string Shrunk(int seed, FaultPath path)
    {
        static List<string> Differences(ForkScript script, FaultPath path) => ForkComparer.Compare(script,
            KernelForkRunner.Run(script), FaultlineForkRunner.Run(script, path, HostFacts.Current.ReadFaultMapsZeroPage));
        ForkScript script = ForkScriptShrinker.Shrink(ForkScriptGenerator.Generate(seed), s => Differences(s, path).Count > 0);
        return $"\n{script.Name} to {script.Steps.Count} steps:\n{script.ToText()}{string.Join("\n", Differences(script, path))}";
    }

    // Runs the script on the kernel once and on Faultline on every path; fails with every difference.
    private ForkRun CompareOnEveryPath(ForkScript script)
    {
        ForkRun kernel = KernelForkRunner.Run(script);
        var differences = new List<string>();
        foreach (FaultPath path in new[] { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock })
        {
            ForkRun ours = FaultlineForkRunner.Run(script, path, HostFacts.Current.ReadFaultMapsZeroPage);
            differences.AddRange(ForkComparer.Compare(script, kernel, ours).Select(d => $"{path}: {d}"));
        }
        _output.WriteLine(script.ToText());
        _output.WriteLine(string.Join("\n", differences));
        Assert.True(differences.Count == 0, string.Join("\n", differences));
        return kernel;
    }
}
