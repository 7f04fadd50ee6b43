using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel's own dirty log is the oracle for Faultline's: a private anonymous region, populated on both
/// sides and armed once, then rounds of random stores, loads and mprotects, each round ending with a get-and-clear
/// on both sides (on the host, <c>PAGEMAP_SCAN</c> with <c>PM_SCAN_WP_MATCHING</c> over an asynchronous
/// write-protecting userfaultfd): the pages reported written must be the same. Every fault path. Reads of pages
/// never mapped are not drawn: the host arms those with PTE markers, Faultline does not (a read fault that maps a
/// private frame instead of the zero page maps it dirty, so it reads as written once).
/// </summary>
[Collection(HostRegionCollection.Name)]
public class DirtyLogConformanceTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const int Pages = 128;
    private const int Rounds = 60;

    public static TheoryData<FaultPath> Paths => new() { FaultPath.MmapLock, FaultPath.Speculative, FaultPath.VmaLock };

    [HostPagemapScanTheory]
    [MemberData(nameof(Paths))]
    public unsafe void WrittenPagesMatchTheHostsPagemapScan(FaultPath path)
    {
        using var region = new HostRegion(Pages * Page);
        using var space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 16 << 20,
            MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage,
        });
        using Cpu cpu = space.AttachCpu();
        using Cpu idle = space.AttachCpu();
        ulong s = region.Start, length = Pages * Page;
        Assert.Equal(0, region.Map(s, length, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
        space.Map(s, length, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        for (ulong at = s; at < s + length; at += Page)
        {
            *(long*)at = 1;
            cpu.Store(at, 1L);
        }
        using var scan = new HostWrittenPageScan(s, length);
        var ranges = new (ulong Start, ulong End)[Pages];
        var bitmap = new ulong[Pages / 64];
        Assert.Equal(Pages, scan.GetAndClear(ranges));
        Array.Clear(ranges);
        Assert.Equal(Pages, space.GetAndClearDirtyLog(s, length, bitmap));
        var writable = Enumerable.Repeat(true, Pages).ToArray();
        var random = new Random(20261204 + (int)path);
        var history = new System.Text.StringBuilder();

        for (int round = 0; round < Rounds; round++)
        {
            for (int op = random.Next(1, 8); op > 0; op--)
            {
                int page = random.Next(Pages);
                ulong at = s + (ulong)page * Page + (ulong)random.Next(512) * 8;
                switch (random.Next(4))
                {
                    case 0:
                    case 1:
                        if (writable[page])
                        {
                            history.Append($" w{page}");
                            *(long*)at = round;
                            cpu.Store(at, (long)round);
                        }
                        break;
                    case 2:
                        history.Append($" r{page}");
                        Assert.Equal(*(long*)at, cpu.Load<long>(at));
                        break;
                    default:
                        int count = random.Next(1, 9);
                        int end = Math.Min(Pages, page + count);
                        bool rw = random.Next(2) == 0;
                        history.Append($" p{page}-{end}{(rw ? "rw" : "r")}");
                        int prot = rw ? Linux.PROT_READ | Linux.PROT_WRITE : Linux.PROT_READ;
                        Assert.Equal(0, region.Protect(s + (ulong)page * Page, (ulong)(end - page) * Page, prot));
                        space.Protect(s + (ulong)page * Page, (ulong)(end - page) * Page, rw ? Protection.ReadWrite : Protection.Read);
                        for (int i = page; i < end; i++)
                        {
                            writable[i] = rw;
                        }
                        break;
                }
            }
            long hostCount = scan.GetAndClear(ranges);
            var host = new SortedSet<int>();
            foreach ((ulong start, ulong stop) in ranges.Take(ranges.Count(r => r.End != 0)))
            {
                for (ulong at = start; at < stop; at += Page)
                {
                    host.Add((int)((at - s) / Page));
                }
            }
            Array.Clear(ranges);
            space.GetAndClearDirtyLog(s, length, bitmap);
            var ours = new SortedSet<int>(Enumerable.Range(0, Pages).Where(i => (bitmap[i / 64] & (1UL << (i % 64))) != 0));
            history.Append($" | host [{string.Join(',', host)}] ours [{string.Join(',', ours)}]\n");
            Assert.True(host.SetEquals(ours), $"round {round}: host [{string.Join(',', host)}] ours [{string.Join(',', ours)}]\n{history}");
            Assert.Equal(hostCount, ours.Count);
        }
    }
}
