using Faultline.Cli.Paths;
using Faultline.Cli.Running;
using Faultline.Cli.Workloads;
using Xunit;

namespace Faultline.Tests.Cli;

/// <summary>The malloc workload's brk heap and its mutators' script on a Faultline address space, and its checks.</summary>
public class MallocWorkloadTests
{
    private const ulong Page = 4096;

    [Fact]
    public void TheHeapGrowsTheBreakAndTrimsItOnlyOnceTheTopChunksAreFreedPastTheThreshold()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        var arena = new MallocArena(space);
        var stats = new WorkerStats();
        ulong start = space.Brk(0);

        ulong low = arena.Allocate(16 * Page, stats);
        ulong high = arena.Allocate(32 * Page, stats);

        Assert.Equal((start, start + 16 * Page), (low, high));
        Assert.Equal(start + 48 * Page, space.Brk(0));
        Assert.Equal(2, stats.ChurnOps);
        // A freed chunk below a live one stays: the top does not move.
        arena.Free(low, stats);
        Assert.Equal(start + 48 * Page, space.Brk(0));
        // 192 KiB free above the top once both are gone: past the 128 KiB threshold, the break comes down.
        arena.Free(high, stats);
        Assert.Equal(start, space.Brk(0));
        Assert.Equal(3, stats.ChurnOps);
        // 64 KiB free is under the threshold: the break stays, and the next chunk reuses that space without brk.
        ulong small = arena.Allocate(16 * Page, stats);
        arena.Free(small, stats);
        Assert.Equal(start + 16 * Page, space.Brk(0));
        Assert.Equal(start, arena.Allocate(8 * Page, stats));
        Assert.Equal(4, stats.ChurnOps);
    }

    [Fact]
    public void FreedChunksMergeWithFreeNeighboursAndAreReusedBeforeTheTopGrows()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        var arena = new MallocArena(space);
        var stats = new WorkerStats();
        ulong start = space.Brk(0);
        ulong a = arena.Allocate(16 * Page, stats);
        ulong b = arena.Allocate(16 * Page, stats);
        ulong c = arena.Allocate(16 * Page, stats);

        arena.Free(a, stats);
        arena.Free(b, stats);

        Assert.Equal(2, arena.Chunks);
        // 24 pages fit in the merged 32-page hole: no brk call.
        Assert.Equal(start, arena.Allocate(24 * Page, stats));
        Assert.Equal(3, stats.ChurnOps);
        ulong d = arena.Allocate(8 * Page, stats);
        Assert.Equal((c + 16 * Page, start + 56 * Page, 4L), (d, space.Brk(0), stats.ChurnOps));
        // c stays between two chunks in use; d merges into it, and both go from the top: 96 KiB free, no trim yet.
        arena.Free(c, stats);
        Assert.Equal(3, arena.Chunks);
        arena.Free(d, stats);
        Assert.Equal((1, start + 56 * Page), (arena.Chunks, space.Brk(0)));
        arena.Free(start, stats);
        Assert.Equal((0, start, 5L), (arena.Chunks, space.Brk(0), stats.ChurnOps));
    }

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.VmaLock)]
    public void FourRoundsOfTheScriptReadBackEveryPageAndLeaveNothingMapped(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20, FaultPath = path });
        var arena = new MallocArena(space);
        var stats = new WorkerStats();
        using var memory = new FaultlineThreadMemory(space.AttachCpu());
        ulong start = space.Brk(0);

        for (long k = 0; k < 4; k++)
        {
            MallocWorkload.MutatorIteration(space, arena, memory, 3, k, stats);
        }

        Assert.Null(stats.Error);
        Assert.Equal(0, stats.Mismatches);
        // 4 block calls a round; 4 brk growths (64, 128, 192, 256 KiB chunks) and 3 trims (64 KiB free stays).
        Assert.Equal(4 * 4 + 4 + 3, stats.ChurnOps);
        Assert.Equal(start, space.Brk(0));
        Assert.Empty(space.GetMappings());
    }

    [Fact]
    public void APageThatDidNotMoveWithTheBlockIsReported()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20 });
        var stats = new WorkerStats();
        using var memory = new ForgetfulMemory(new FaultlineThreadMemory(space.AttachCpu()));

        MallocWorkload.MutatorIteration(space, new MallocArena(space), memory, 3, 0, stats);

        Assert.True(stats.Mismatches > 0);
        Assert.StartsWith("malloc: 64 page(s) wrong: block after mremap", stats.Error);
    }

    /// <summary>Reads zero wherever a single word is loaded: as if the pages had not moved with the mapping.</summary>
    private sealed class ForgetfulMemory(ThreadMemory inner) : ThreadMemory
    {
        public override void StampPages(ulong address, long pages, long salt, int word = 0) => inner.StampPages(address, pages, salt, word);

        public override long VerifyPages(ulong address, long pages, long salt, out ulong firstBad, int word = 0) =>
            inner.VerifyPages(address, pages, salt, out firstBad, word);

        public override void StoreLong(ulong address, long value) => inner.StoreLong(address, value);

        public override long LoadLong(ulong address) => 0;

        public override void Dispose() => inner.Dispose();
    }
}
