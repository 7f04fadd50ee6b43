using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Stress;

/// <summary>
/// The concurrent mapping test: Cpus fault and write stamped data into their own regions while another thread maps,
/// unmaps and protects other regions; every stamp reads back, and no access to an unmapped page succeeds.
/// </summary>
public class ConcurrentMappingStressTests
{
    private readonly ITestOutputHelper _output;

    public ConcurrentMappingStressTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    private static ulong Window(int id) => 0x2000_0000_0000UL + (ulong)id * (1UL << 30);

    [Theory]
    [MemberData(nameof(Paths))]
    public void FaultersKeepTheirStampsWhileAWriterChurns(FaultPath path)
    {
        const int faulters = 2;
        const ulong regionBytes = 2 << 20;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2.5);
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 256 << 20, PoisonFreedFrames = true });
        int baselineFrames = space.FramesInUse;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long faultRounds = 0, churnRounds = 0, segvChecks = 0;

        var threads = new List<Thread>();
        for (int t = 0; t < faulters; t++)
        {
            int id = t;
            threads.Add(new Thread(() =>
            {
                using Cpu cpu = space.AttachCpu();
                var random = new Random(id);
                // Each thread maps only inside its own window (MAP_FIXED), so after it unmaps, nobody maps there again
                // before its check: any successful access there is a stale translation.
                ulong window = Window(id);
                int slot = 0;
                while (DateTime.UtcNow < deadline)
                {
                    ulong region = space.Map(window + (ulong)(slot++ % 8) * regionBytes, regionBytes, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                    ulong stamp = ((ulong)id << 56) | ((ulong)random.Next() << 20);
                    for (ulong p = region; p < region + regionBytes; p += 4096)
                    {
                        cpu.Store(p + (p >> 12) % 500 * 8, stamp ^ p);
                    }
                    for (ulong p = region; p < region + regionBytes; p += 4096)
                    {
                        ulong got = cpu.Load<ulong>(p + (p >> 12) % 500 * 8);
                        if (got != (stamp ^ p))
                        {
                            errors.Enqueue($"{path}: stamp mismatch at 0x{p:x}: 0x{got:x} != 0x{stamp ^ p:x}");
                        }
                    }
                    space.Unmap(region, regionBytes);
                    AccessOutcome after = cpu.TryLoad(region + 4096, out ulong _);
                    if (after != AccessOutcome.SegvMapErr)
                    {
                        errors.Enqueue($"{path}: load after unmap gave {after} at 0x{region:x}");
                    }
                    Interlocked.Increment(ref faultRounds);
                }
            }) { IsBackground = true });
        }
        threads.Add(new Thread(() =>
        {
            using Cpu cpu = space.AttachCpu();
            var random = new Random(99);
            ulong window = Window(faulters);
            while (DateTime.UtcNow < deadline)
            {
                ulong pages = (ulong)random.Next(1, 64);
                ulong a = space.Map(window + (ulong)random.Next(0, 1024) * 4096, pages * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                cpu.Store(a, 0xABCDEFL);
                ulong half = pages / 2 * 4096;
                if (half > 0)
                {
                    space.Protect(a, half, Protection.Read);
                    if (cpu.TryStore(a, 1L) != AccessOutcome.SegvAccErr)
                    {
                        errors.Enqueue($"{path}: write after protect to read-only succeeded at 0x{a:x}");
                    }
                    if (cpu.Load<long>(a) != 0xABCDEFL)
                    {
                        errors.Enqueue($"{path}: data changed by protect at 0x{a:x}");
                    }
                }
                space.Unmap(a, pages * 4096);
                if (cpu.TryLoad(a, out long _) != AccessOutcome.SegvMapErr)
                {
                    errors.Enqueue($"{path}: load after unmap succeeded at 0x{a:x}");
                }
                Interlocked.Increment(ref segvChecks);
                Interlocked.Increment(ref churnRounds);
            }
        }) { IsBackground = true });

        threads.ForEach(t => t.Start());
        threads.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(60)), "a thread hung"));
        _output.WriteLine($"{path}: {faultRounds} fault rounds, {churnRounds} churn rounds, counters: " +
            string.Join(", ", space.GetCounters().Where(kv => kv.Value != 0).Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.Empty(errors);
        Assert.True(faultRounds > 0 && churnRounds > 0);
        Assert.Equal(0, space.MapCount);
        Assert.Equal(0, space.ResidentPages);
        Assert.Equal(baselineFrames, space.FramesInUse);
    }
}
