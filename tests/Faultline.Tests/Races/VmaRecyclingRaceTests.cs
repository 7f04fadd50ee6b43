using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Races;

/// <summary>
/// Reuse of retired VMAs against lockless readers, staged with probe gates: a fault stopped right after its lockless
/// lookup (inside its walk section) holds a VMA that writers then unmap and churn past; the VMA must not be handed out
/// again, and the walk epoch must not move more than once, until the fault leaves its section. Once it has, the VMA is
/// reused.
/// </summary>
public sealed class VmaRecyclingRaceTests
{
    private const ulong Page = 4096;
    private const ulong Target = 0x1000_0000;
    private const ulong Others = 0x2000_0000;
    private const string Reader = "reader";

    [Theory]
    [InlineData(FaultPath.VmaLock)]
    [InlineData(FaultPath.Speculative)]
    public void AVmaAReaderFoundIsNotReusedUntilItsWalkSectionEnds(FaultPath path)
    {
        ProbePoint afterLookup = path == FaultPath.Speculative ? ProbePoint.SpeculativeAfterLookup : ProbePoint.VmaLockAfterLookup;
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 16 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        space.Map(Target, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        using Cpu cpu = space.AttachCpu();
        using Cpu other = space.AttachCpu(); // the speculative path needs a second user
        other.Store(Target, 1L); // gives the VMA an anon_vma, which the speculative path requires
        Vma vma = mm.Tree.LookupLockless(Target)!;
        long id = vma.Id;

        using var threads = new ThreadScope();
        using var gate = new ProbeGate(space, afterLookup, ThreadRole.Is(Reader));
        var reader = threads.Run(Reader, () => cpu.TryLoad(Target + Page, out long _));
        gate.WaitArrived();
        long epoch = mm.Rcu.WalkEpoch;

        space.Unmap(Target, 8 * Page);
        Churn(space, 8);
        Assert.Equal(id, vma.Id);
        Assert.Equal(Target, vma.Start);
        Assert.True(vma.IsDetached);
        Assert.True(mm.Rcu.WalkEpoch <= epoch + 1, $"the walk epoch moved from {epoch} to {mm.Rcu.WalkEpoch} past a reader inside");

        gate.Release();
        Assert.Equal(AccessOutcome.SegvMapErr, reader.Join());
        Churn(space, 3);
        Assert.True(mm.Rcu.WalkEpoch >= epoch + 3, "the epoch moves again once the reader left");
        // Enough new VMAs to empty the free list: the retired VMA is among them.
        for (ulong i = 0; i < 2 * RcuRecycler<Vma>.MaxFree && vma.Id == id; i++)
        {
            space.Map(Others + 2 * i * Page, Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        }
        Assert.NotEqual(id, vma.Id);
        Assert.False(vma.IsDetached);
    }

    // Write sections that retire and create VMAs away from the target.
    private static void Churn(AddressSpace space, int sections)
    {
        for (int i = 0; i < sections; i++)
        {
            ulong at = space.Map(Others, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
            space.Unmap(at, 4 * Page);
        }
    }
}
