using System.Collections.Concurrent;
using Faultline.Physical;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Stress;

/// <summary>
/// Shared anonymous memory under churn: a parent stores stamped values into shared pages and a forked child reads them
/// while another child Cpu drops its mappings (MADV_DONTNEED), punches holes (MADV_REMOVE, which zaps the parent
/// too) and flips its protection. A load returns 0 (a punched page) or a stamp of that very page, never another
/// page's data or a freed frame's poison; no freed frame is written; every frame goes back at the end.
/// </summary>
public class SharedMemoryStressTests
{
    private const int Pages = 16;
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    private readonly ITestOutputHelper _output;

    public SharedMemoryStressTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath> Paths => [FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock];

    [Theory]
    [MemberData(nameof(Paths))]
    public void LoadsSeeTheirPagesStampOrAHoleWhileTheChildDiscardsAndPunches(FaultPath path)
    {
        using var parent = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 32 << 20, PoisonFreedFrames = true });
        ulong a = parent.Map(Base, Pages * Page, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);
        using AddressSpace child = parent.Fork();
        var errors = new ConcurrentQueue<string>();
        DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(1);
        long stores = 0, loads = 0, mutations = 0;

        void Check(int page, long value)
        {
            if (value != 0 && (value & 0xFFFF) != page)
            {
                errors.Enqueue($"page {page} read 0x{value:x}");
            }
        }

        var writer = new Thread(() =>
        {
            using Cpu cpu = parent.AttachCpu();
            var random = new Random(1);
            for (long n = 1; DateTime.UtcNow < deadline; n++)
            {
                int page = random.Next(Pages);
                ulong at = a + (ulong)page * Page;
                cpu.Store(at, (n << 16) | (long)page);
                Check(page, cpu.Load<long>(at));
                stores++;
            }
        });
        var reader = new Thread(() =>
        {
            using Cpu cpu = child.AttachCpu();
            var random = new Random(2);
            while (DateTime.UtcNow < deadline)
            {
                int page = random.Next(Pages);
                if (cpu.TryLoad(a + (ulong)page * Page, out long value) == AccessOutcome.Ok)
                {
                    Check(page, value);
                    loads++;
                }
            }
        });
        var mutator = new Thread(() =>
        {
            using Cpu cpu = child.AttachCpu();
            var random = new Random(3);
            while (DateTime.UtcNow < deadline)
            {
                int first = random.Next(Pages);
                ulong at = a + (ulong)first * Page, length = (ulong)(1 + random.Next(Math.Min(4, Pages - first))) * Page;
                switch (random.Next(3))
                {
                    case 0:
                        child.Advise(at, length, Advice.DontNeed);
                        break;
                    case 1:
                        child.Advise(at, length, Advice.Remove);
                        break;
                    default:
                        child.Protect(at, length, Protection.Read);
                        child.Protect(at, length, Protection.ReadWrite);
                        break;
                }
                mutations++;
            }
        });
        writer.Start();
        reader.Start();
        mutator.Start();
        writer.Join();
        reader.Join();
        mutator.Join();

        _output.WriteLine($"{path}: {stores} stores, {loads} loads, {mutations} mutations, {errors.Count} errors");
        Assert.Empty(errors);
        Assert.True(stores > 0 && loads > 0 && mutations > 0);
        Assert.Equal(1, child.MapCount);
        child.Unmap(a, Pages * Page);
        parent.Unmap(a, Pages * Page);
        PhysicalMemory memory = parent.Descriptor.Memory;
        Assert.Equal(0, Enumerable.Range(1, memory.FrameCount - 1).Count(pfn => memory.Info(pfn).Kind == FrameKind.Shmem));
        Assert.Equal(0, parent.PoisonViolations);
        Assert.Equal(0, parent.ResidentPages);
        Assert.Equal(0, child.ResidentPages);
    }
}
