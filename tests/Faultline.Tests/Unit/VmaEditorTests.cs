using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Xunit;

namespace Faultline.Tests.Unit;

public class VmaEditorTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x10_0000_0000UL;

    [Fact]
    public void RepeatedBeginWriteInOneSectionOpensTheSequenceOnceAndEndClosesIt()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Vma vma = mm.Tree.FindContaining(Base)!;
        int before = vma.Sequence.ReadRaw();
        var editor = new VmaEditor(mm);

        mm.MmapLock.EnterWrite();
        editor.BeginWrite(vma);
        editor.BeginWrite(vma);
        Assert.Equal(before + 1, vma.Sequence.ReadRaw());
        Assert.Equal(mm.MmapLock.LockSequence, vma.LockSequence);
        editor.EndWriteSections();
        mm.MmapLock.ExitWrite();

        Assert.Equal(before + 2, vma.Sequence.ReadRaw());
        Assert.NotEqual(mm.MmapLock.LockSequence, vma.LockSequence);
    }

    [Fact]
    public void MergedNewPieceHasItsSequenceOpenedAndClosed()
    {
        // A VMA attached earlier in the same section is write-locked but has no open sequence; a merge must open it.
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 1 << 20 });
        MemoryDescriptor mm = space.Descriptor;
        var editor = new VmaEditor(mm);
        mm.MmapLock.EnterWrite();
        Vma left = mm.CreateVma(Base, Base + Page, Base >> PageGeometry.PageShift, VmFlags.Read, AnonymousBacking.Instance);
        editor.Attach(left);
        Assert.False(left.Sequence.IsWriting);
        editor.InsertAndMerge(mm.CreateVma(Base + Page, Base + 2 * Page, (Base + Page) >> PageGeometry.PageShift, VmFlags.Read, AnonymousBacking.Instance));
        Assert.True(left.Sequence.IsWriting);
        Assert.True(left.IsDetached);
        mm.Tree.Publish();
        editor.EndWriteSections();
        mm.MmapLock.ExitWrite();

        Assert.False(left.Sequence.IsWriting);
        Assert.Equal(1, space.MapCount);
        Assert.Equal((Base, Base + 2 * Page), (mm.Tree.FindContaining(Base)!.Start, mm.Tree.FindContaining(Base)!.End));
    }
}
