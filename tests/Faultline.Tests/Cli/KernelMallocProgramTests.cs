using Faultline.Cli.Paths;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>
/// The kernel row of the malloc workload: <c>Native/malloc_bench.c</c> built with the host's compiler, run with
/// touching and mutating threads, its snapshots parsed and subtracted; a source that cannot be built is one line.
/// </summary>
public sealed class KernelMallocProgramTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-malloc-bench-test").FullName;

    [Fact]
    public void TheReferenceFaultsAndRunsTheAllocatorScriptAndReadsBackWhatItWrote()
    {
        Assert.Null(KernelMallocProgram.Problem);
        using KernelMallocProcess process = KernelMallocProgram.Start(1, 2);

        KernelMallocFigures first = process.Snapshot();
        // Until every mutator finished a few rounds, each with brk calls and a block that grew by mremap.
        KernelMallocFigures since = first;
        for (int i = 0; i < 2000 && (since.MutatorIterations < 8 || since.ToucherFaults == 0); i++)
        {
            Thread.Sleep(5);
            since = process.Snapshot().Since(first);
        }
        string? wrong = process.Stop();

        Assert.Null(wrong);
        Assert.Equal(0, since.Mismatches);
        Assert.True(since.Seconds > 0);
        Assert.True(since.ToucherFaults > 0);
        Assert.True(since.MutatorIterations >= 8);
        // Four calls a round on the block, and the heap's brk calls (growth and trims).
        Assert.True(since.MutatorOps >= 4 * since.MutatorIterations);
        Assert.InRange(since.BrkCalls, 1, since.MutatorOps);
    }

    [Fact]
    public void SnapshotsParseAndSubtractAndAMissingFigureIsAnError()
    {
        KernelMallocFigures a = KernelMallocFigures.Parse(
            "ns=1000000000 toucher_faults=10 toucher_iterations=1 toucher_cpu_ns=5000000 mutator_ops=40 mutator_iterations=8 " +
            "brk_calls=8 moves=3 mismatches=0");
        KernelMallocFigures b = KernelMallocFigures.Parse(
            "ns=3000000000 toucher_faults=110 toucher_iterations=2 toucher_cpu_ns=7000000 mutator_ops=100 mutator_iterations=20 " +
            "brk_calls=20 moves=9 mismatches=1");

        KernelMallocFigures d = b.Since(a);
        Assert.Equal(2, d.Seconds, 9);
        Assert.Equal(0.002, d.ToucherCpuSeconds, 9);
        Assert.Equal((100, 1, 60, 12, 12, 6, 1), (d.ToucherFaults, d.ToucherIterations, d.MutatorOps, d.MutatorIterations, d.BrkCalls, d.Moves, d.Mismatches));
        Assert.Throws<FormatException>(() => KernelMallocFigures.Parse("ns=1 toucher_faults=2"));
        Assert.Throws<FormatException>(() => KernelMallocFigures.Parse("ns=x"));
    }

    [Fact]
    public void ASourceThatDoesNotBuildGivesOneLineInsteadOfAnException()
    {
        string source = Path.Combine(_folder, "malloc_bench.c");
        File.WriteAllText(source, $"int main(void) {{ return undeclared_{Guid.NewGuid():N}; }}\n");

        (string? executable, string? problem) = KernelMallocProgram.TryBuild(source);

        Assert.Null(executable);
        Assert.NotNull(problem);
        Assert.StartsWith("kernel malloc reference not run: ", problem);
        Assert.DoesNotContain('\n', problem);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
