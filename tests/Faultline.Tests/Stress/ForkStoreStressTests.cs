using System.Collections.Concurrent;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Stress;

/// <summary>
/// Fork beside concurrent stores: Cpus store at random into a private anonymous region while another thread forks the
/// address space and disposes the child, over and over. Each fork shares every page copy-on-write, each store after it
/// copies or reuses one, and each disposal frees the child's side; no store may land in a freed frame (poisoned
/// frames are checked when reused) and every Cpu reads back what it stored last.
/// </summary>
public class ForkStoreStressTests
{
    private const int Pages = 128;
    private const int Stores = 3;
    private const ulong PageSize = PageGeometry.PageSize;
    private const long MemoryBytes = 16 << 20;

    private readonly ITestOutputHelper _output;

    public ForkStoreStressTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [Theory]
    [MemberData(nameof(Paths))]
    public void NoStoreLandsInAFrameFreedByAForkedChild(FaultPath path)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = MemoryBytes,
            PoisonFreedFrames = true,
            TransparentHugePages = TransparentHugePageMode.Never,
        });
        ulong region = space.Map(0, Pages * PageSize, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        var errors = new ConcurrentQueue<string>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        long forks = 0, stores = 0;

        // Each storer owns one 8-byte slot of every page, so it can check that its last store stayed.
        var storers = Enumerable.Range(0, Stores).Select(id => new Thread(() =>
        {
            using Cpu cpu = space.AttachCpu();
            var random = new Random(id + 1);
            var last = new long[Pages];
            for (long n = 1; DateTime.UtcNow < deadline; n++)
            {
                int page = random.Next(Pages);
                ulong at = region + (ulong)page * PageSize + (ulong)id * 8;
                if (last[page] != 0 && cpu.Load<long>(at) != last[page])
                {
                    errors.Enqueue($"{path}: Cpu {id} page {page} lost its store {last[page]}");
                }
                cpu.Store(at, n);
                last[page] = n;
                Interlocked.Increment(ref stores);
            }
        })).ToList();

        var forker = new Thread(() =>
        {
            while (DateTime.UtcNow < deadline)
            {
                space.Fork().Dispose();
                Interlocked.Increment(ref forks);
            }
        });

        storers.ForEach(t => t.Start());
        forker.Start();
        Assert.True(forker.Join(TimeSpan.FromSeconds(60)));
        storers.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(60))));
        space.Unmap(region, Pages * PageSize);
        // Reuse every free frame once so the poison check sees all of them.
        using (Cpu sweep = space.AttachCpu())
        {
            // Every free frame but a few for the sweep's own page tables.
            ulong bytes = (ulong)(MemoryBytes / (long)PageSize - space.FramesInUse - 16) * PageSize;
            ulong big = space.Map(0, bytes, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            for (ulong p = big; p < big + bytes; p += PageSize)
            {
                sweep.Store(p, 1L);
            }
        }
        _output.WriteLine($"{path}: {forks} forks, {stores} stores, poison violations {space.PoisonViolations}");
        foreach (string error in errors.Take(10))
        {
            _output.WriteLine(error);
        }
        Assert.Empty(errors);
        Assert.True(forks > 10 && stores > 1000);
        Assert.Equal(0, space.PoisonViolations);
    }
}
