using Faultline.Physical;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Order-9 frames for transparent huge pages (<see cref="PhysicalMemory.TryAllocateHuge"/>): alignment, exhaustion
/// without compaction, reuse by both sizes, and no frame handed out twice.
/// </summary>
public class HugeFrameTests
{
    private const int Huge = PhysicalMemory.HugeFrames;

    [Fact]
    public void HugeBlockIsAlignedContiguousAndCountedInUse()
    {
        using var memory = new PhysicalMemory(4 * Huge, poisonFreedFrames: false);
        Assert.True(memory.TryAllocateHuge(out long first));
        Assert.Equal(0, first % Huge);
        Assert.NotEqual(PhysicalMemory.ZeroFrame, first);
        Assert.Equal(Huge, memory.FramesInUse);
        Assert.Equal(1, memory.Info(first).RefCount);
        Assert.True(memory.HasFlags(first, FrameFlags.HugeHead));
        for (long pfn = first + 1; pfn < first + Huge; pfn++)
        {
            Assert.Equal(FrameKind.Allocated, memory.Info(pfn).Kind);
            Assert.Equal(0, memory.Info(pfn).RefCount);
            Assert.True(memory.HasFlags(pfn, FrameFlags.HugeTail));
        }
    }

    [Fact]
    public void ExhaustionReturnsFalseAndChangesNothing()
    {
        // Frame 0 is the zero frame, so four blocks' worth of frames hold only three aligned free blocks.
        using var memory = new PhysicalMemory(4 * Huge, poisonFreedFrames: false);
        var blocks = new List<long>();
        while (memory.TryAllocateHuge(out long first))
        {
            blocks.Add(first);
        }
        Assert.Equal([Huge, 2 * Huge, 3 * Huge], blocks);
        int inUse = memory.FramesInUse;
        Assert.False(memory.TryAllocateHuge(out long none));
        Assert.Equal(PhysicalMemory.NoFrame, none);
        Assert.Equal(inUse, memory.FramesInUse);
        // The frames skipped to reach the first alignment are still there for 4 KiB allocations.
        Assert.Equal(Huge - 1, memory.FreeFrames);
    }

    [Fact]
    public void FreedBlockIsReusedWholeByTheNextHugeAllocation()
    {
        using var memory = new PhysicalMemory(2 * Huge, poisonFreedFrames: false);
        Assert.True(memory.TryAllocateHuge(out long first));
        Assert.False(memory.TryAllocateHuge(out _));
        memory.PutHuge(first);
        Assert.Equal(0, memory.FramesInUse);
        Assert.Equal(1, memory.FreeHugeBlocks);
        Assert.True(memory.TryAllocateHuge(out long again));
        Assert.Equal(first, again);
    }

    [Fact]
    public void FourKilobyteAllocationsNeverTakeAnAllocatedBlockAndBreakUpOnlyAFreeOneWhenNothingElseIsLeft()
    {
        using var memory = new PhysicalMemory(3 * Huge, poisonFreedFrames: false);
        Assert.True(memory.TryAllocateHuge(out long held));
        Assert.True(memory.TryAllocateHuge(out long freed));
        memory.FreeHuge(freed);

        // The frames below the first block come first; the free block stays whole while they last.
        int[] small = new int[Huge - 1];
        Assert.Equal(small.Length, memory.AllocateBatch(small));
        Assert.All(small, pfn => Assert.InRange(pfn, 1, Huge - 1));
        Assert.Equal(1, memory.FreeHugeBlocks);

        // Then the free block is broken up; the allocated one is never handed out.
        int[] rest = new int[Huge + 8];
        Assert.Equal(Huge, memory.AllocateBatch(rest));
        Assert.Equal(Enumerable.Range((int)freed, Huge), rest[..Huge].Order());
        Assert.DoesNotContain(rest[..Huge], pfn => pfn >= held && pfn < held + Huge);
        Assert.Equal(0, memory.FreeHugeBlocks);
        Assert.False(memory.TryAllocateHuge(out _));
        Assert.Equal(0, memory.FreeFrames);

        // Frames of a broken-up block come back one by one and are not merged again: no compaction.
        memory.FreeBatch(rest.AsSpan(0, Huge));
        Assert.False(memory.TryAllocateHuge(out _));
        Assert.NotEqual(PhysicalMemory.NoFrame, memory.Allocate());
    }

    [Fact]
    public void FreeHugeRefusesAnythingButTheHeadOfAnAllocatedBlock()
    {
        using var memory = new PhysicalMemory(2 * Huge, poisonFreedFrames: false);
        Assert.True(memory.TryAllocateHuge(out long first));
        Assert.Throws<ArgumentException>(() => memory.FreeHuge(first + 1));
        int small = memory.Allocate();
        Assert.Throws<ArgumentException>(() => memory.FreeHuge(small));
        memory.FreeHuge(first);
        Assert.Throws<ArgumentException>(() => memory.FreeHuge(first));
        Assert.Equal(1, memory.FramesInUse);
    }

    [Fact]
    public unsafe void PrepareZeroedHugeClearsWhatTheLastOwnerWrote()
    {
        using var memory = new PhysicalMemory(2 * Huge, poisonFreedFrames: false);
        Assert.True(memory.TryAllocateHuge(out long first));
        memory.PrepareZeroedHuge(first);
        new Span<byte>(memory.FrameAddress(first), Huge * PhysicalMemory.FrameSize).Fill(0xA5);
        memory.FreeHuge(first);

        Assert.True(memory.TryAllocateHuge(out long again));
        Assert.Equal(first, again);
        memory.PrepareZeroedHuge(again);
        Assert.Equal(-1, new ReadOnlySpan<byte>(memory.FrameAddress(again), Huge * PhysicalMemory.FrameSize).IndexOfAnyExcept((byte)0));
    }

    [Fact]
    public void PoisonedBlockIsCheckedWhenItsFramesAreReused()
    {
        using var memory = new PhysicalMemory(2 * Huge, poisonFreedFrames: true);
        Assert.True(memory.TryAllocateHuge(out long first));
        memory.PrepareZeroedHuge(first);
        memory.FreeHuge(first);
        Assert.True(memory.TryAllocateHuge(out long again));
        memory.PrepareZeroedHuge(again);
        Assert.Equal(0, memory.PoisonViolations);
    }

    [Fact]
    public void ConcurrentHugeAndSmallAllocationsNeverShareAFrame()
    {
        const int threads = 4;
        using var memory = new PhysicalMemory(16 * Huge, poisonFreedFrames: false);
        var owner = new int[memory.FrameCount];
        int collisions = 0;
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(id => new Thread(() =>
        {
            var random = new Random(id);
            var hugeHeld = new List<long>();
            var smallHeld = new List<int>();
            start.SignalAndWait();
            for (int round = 0; round < 2000; round++)
            {
                if (random.Next(4) == 0 && memory.TryAllocateHuge(out long first))
                {
                    for (long pfn = first; pfn < first + Huge; pfn++)
                    {
                        if (Interlocked.CompareExchange(ref owner[pfn], id + 1, 0) != 0)
                        {
                            Interlocked.Increment(ref collisions);
                        }
                    }
                    hugeHeld.Add(first);
                }
                else if (memory.Allocate() is int pfn && pfn != PhysicalMemory.NoFrame)
                {
                    if (Interlocked.CompareExchange(ref owner[pfn], id + 1, 0) != 0)
                    {
                        Interlocked.Increment(ref collisions);
                    }
                    smallHeld.Add(pfn);
                }
                if (random.Next(3) == 0 && hugeHeld.Count > 0)
                {
                    long last = hugeHeld[^1];
                    hugeHeld.RemoveAt(hugeHeld.Count - 1);
                    for (long pfn = last; pfn < last + Huge; pfn++)
                    {
                        Volatile.Write(ref owner[pfn], 0);
                    }
                    memory.FreeHuge(last);
                }
                if (smallHeld.Count > 64)
                {
                    foreach (int pfn in smallHeld)
                    {
                        Volatile.Write(ref owner[pfn], 0);
                    }
                    memory.FreeBatch(smallHeld.ToArray());
                    smallHeld.Clear();
                }
            }
            hugeHeld.ForEach(first =>
            {
                for (long pfn = first; pfn < first + Huge; pfn++)
                {
                    Volatile.Write(ref owner[pfn], 0);
                }
                memory.FreeHuge(first);
            });
            foreach (int pfn in smallHeld)
            {
                Volatile.Write(ref owner[pfn], 0);
            }
            memory.FreeBatch(smallHeld.ToArray());
        })).ToList();
        workers.ForEach(t => t.Start());
        workers.ForEach(t => t.Join());
        Assert.Equal(0, Volatile.Read(ref collisions));
        Assert.Equal(0, memory.FramesInUse);
    }
}
