using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Xunit;

namespace Faultline.Tests.Unit;

public class VmaTreeTests
{
    private const ulong Page = 4096;

    private static Vma NewVma(MemoryDescriptor mm, ulong start, ulong end) =>
        mm.CreateVma(start, end, start >> 12, VmFlags.Read | VmFlags.Write, AnonymousBacking.Instance);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void RandomInsertRemoveMatchesASortedModel(int seed)
    {
        using var mm = new MemoryDescriptor(AddressSpace.SettingsFrom(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20 }));
        var tree = new VmaTree(mm.Rcu, mm.MmapLock);
        var model = new SortedDictionary<ulong, ulong>();
        var random = new Random(seed);
        for (int step = 0; step < 3000; step++)
        {
            ulong start = (ulong)random.Next(0, 4096) * Page;
            ulong end = start + (ulong)random.Next(1, 8) * Page;
            bool free = !model.Any(kv => kv.Key < end && kv.Value > start);
            if (free && random.Next(3) > 0)
            {
                tree.Insert(NewVma(mm, start, end));
                model[start] = end;
            }
            else if (model.Count > 0)
            {
                ulong victim = model.Keys.ElementAt(random.Next(model.Count));
                tree.Remove(victim);
                model.Remove(victim);
            }
            if (step % 97 == 0)
            {
                tree.Publish();
            }
            Assert.Equal(model.Count, tree.Count);
            ulong probe = (ulong)random.Next(0, 4200) * Page + 17;
            KeyValuePair<ulong, ulong>? containing = model.Where(kv => kv.Key <= probe && probe < kv.Value).Select(kv => (KeyValuePair<ulong, ulong>?)kv).FirstOrDefault();
            Assert.Equal(containing?.Key, tree.FindContaining(probe)?.Start);
            ulong? firstAbove = model.Where(kv => kv.Value > probe).Select(kv => (ulong?)kv.Key).FirstOrDefault();
            Assert.Equal(firstAbove, tree.FindFirstEndingAbove(probe)?.Start);
            ulong length = (ulong)random.Next(1, 16) * Page;
            ulong low = (ulong)random.Next(0, 100) * Page, high = (ulong)random.Next(3000, 4300) * Page;
            Assert.Equal(BruteTopDown(model, length, low, high), tree.FindGapTopDown(length, low, high));
            Assert.Equal(BruteBottomUp(model, length, low, high), tree.FindGapBottomUp(length, low, high));
        }
        Assert.Equal(model.Keys.ToList(), tree.All().Select(v => v.Start).ToList());
    }

    [Fact]
    public void ReadersSeeOnlyPublishedVersions()
    {
        using var mm = new MemoryDescriptor(AddressSpace.SettingsFrom(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20 }));
        var tree = new VmaTree(mm.Rcu, mm.MmapLock);
        tree.Insert(NewVma(mm, 0x10000, 0x20000));
        Assert.Null(tree.LookupLockless(0x10000));
        tree.Publish();
        VmaTreeNode? snapshot = tree.Published;
        tree.Remove(0x10000);
        tree.Insert(NewVma(mm, 0x30000, 0x40000));
        Assert.NotNull(tree.LookupLockless(0x10000));
        Assert.Null(tree.LookupLockless(0x30000));
        tree.Publish();
        Assert.Null(tree.LookupLockless(0x10000));
        Assert.NotNull(VmaTree.Containing(snapshot, 0x10000));
    }

    private static ulong? BruteTopDown(SortedDictionary<ulong, ulong> model, ulong length, ulong low, ulong high)
    {
        for (ulong a = high - length; a >= low && a + length <= high; a -= Page)
        {
            if (!model.Any(kv => kv.Key < a + length && kv.Value > a))
            {
                return a;
            }
            if (a < Page)
            {
                break;
            }
        }
        return null;
    }

    private static ulong? BruteBottomUp(SortedDictionary<ulong, ulong> model, ulong length, ulong low, ulong high)
    {
        for (ulong a = low; a + length <= high; a += Page)
        {
            if (!model.Any(kv => kv.Key < a + length && kv.Value > a))
            {
                return a;
            }
        }
        return null;
    }
}
