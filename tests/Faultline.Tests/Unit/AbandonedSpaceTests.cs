using Faultline.Physical;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// Address spaces and Cpus nobody disposed: once unreachable they are collected and their guest RAM goes back to the
/// host (nothing static keeps them: the metrics meter, the grace-period registries).
/// </summary>
[Collection(ProcessWideStateCollection.Name)]
public sealed class AbandonedSpaceTests
{
    private const int Spaces = 8;
    private const long ArenaBytes = 16 << 20;

    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void AddressSpacesNobodyDisposedReleaseTheirArenaWhenCollected(FaultPath path)
    {
        CollectEverything();
        long baseline = ArenaHandle.LiveBytes;

        List<WeakReference> abandoned = CreateAndAbandon(path, out long reservedWhileAlive);
        CollectEverything();

        Assert.Equal(Spaces * ArenaBytes, reservedWhileAlive);
        Assert.All(abandoned, reference => Assert.False(reference.IsAlive, $"{reference.Target} is still reachable"));
        Assert.Equal(baseline, ArenaHandle.LiveBytes);
    }

    [Fact]
    public void DisposedAddressSpaceReleasesItsArenaAtOnce()
    {
        CollectEverything();
        long baseline = ArenaHandle.LiveBytes;
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = ArenaBytes });
        Cpu cpu = space.AttachCpu();
        Assert.Equal(baseline + ArenaBytes, ArenaHandle.LiveBytes);

        space.Dispose();

        Assert.Equal(baseline, ArenaHandle.LiveBytes);
        cpu.Dispose();
        Assert.Equal(baseline, ArenaHandle.LiveBytes);
    }

    private static void CollectEverything()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    // Out of line, so no reference to what it creates survives in the caller's frame.
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static List<WeakReference> CreateAndAbandon(FaultPath path, out long reservedWhileAlive)
    {
        long before = ArenaHandle.LiveBytes;
        var references = new List<WeakReference>();
        var alive = new List<AddressSpace>();
        for (int i = 0; i < Spaces; i++)
        {
            var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = ArenaBytes });
            ulong a = space.Map(0, 1 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Populate);
            Cpu cpu = space.AttachCpu();
            Cpu other = space.AttachCpu();
            for (ulong p = a; p < a + (1 << 20); p += 4096)
            {
                cpu.Store(p + 8, (long)p);
                Assert.Equal((long)p, other.Load<long>(p + 8));
            }
            space.GetCounters();
            alive.Add(space);
            references.Add(new WeakReference(space));
            references.Add(new WeakReference(cpu));
            references.Add(new WeakReference(other));
        }
        reservedWhileAlive = ArenaHandle.LiveBytes - before;
        GC.KeepAlive(alive);
        return references;
    }
}
