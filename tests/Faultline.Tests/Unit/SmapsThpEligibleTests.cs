using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// smaps' <c>THPeligible</c> as <c>thp_vma_allowable_orders(TVA_SMAPS | TVA_ENFORCE_SYSFS)</c> computes it: the
/// sysfs mode with the mapping's advice, private anonymous memory only, and at least one aligned 2 MiB block inside
/// the mapping (untouched mappings count).
/// </summary>
public sealed class SmapsThpEligibleTests
{
    private const ulong Base = 0x4000_0000;
    private const ulong Page = PageGeometry.PageSize;
    private const ulong PmdSpan = PageGeometry.PmdSize;

    [Theory]
    [InlineData(TransparentHugePageMode.Always, Advice.Normal, 1)]
    [InlineData(TransparentHugePageMode.Always, Advice.HugePage, 1)]
    [InlineData(TransparentHugePageMode.Always, Advice.NoHugePage, 0)]
    [InlineData(TransparentHugePageMode.Madvise, Advice.Normal, 0)]
    [InlineData(TransparentHugePageMode.Madvise, Advice.HugePage, 1)]
    [InlineData(TransparentHugePageMode.Madvise, Advice.NoHugePage, 0)]
    [InlineData(TransparentHugePageMode.Never, Advice.Normal, 0)]
    [InlineData(TransparentHugePageMode.Never, Advice.HugePage, 0)]
    [InlineData(TransparentHugePageMode.Never, Advice.NoHugePage, 0)]
    public void TheModeAndTheAdviceDecide(TransparentHugePageMode mode, Advice advice, int expected)
    {
        using AddressSpace space = NewSpace(mode);
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        space.Advise(a, 2 * PmdSpan, advice);

        Assert.Equal([expected], Eligible(space));
    }

    [Theory]
    [InlineData(0, 2 * PmdSpan, 1)]
    [InlineData(0, PmdSpan, 1)]
    [InlineData(0, PmdSpan - Page, 0)]
    [InlineData(Page, PmdSpan, 0)]          // no aligned block fits: [Base + 4 KiB, Base + 2 MiB + 4 KiB)
    [InlineData(Page, 2 * PmdSpan, 1)]      // [Base + 2 MiB, Base + 4 MiB) fits
    [InlineData(Page, PmdSpan + Page, 0)]
    public void SizeAndAlignmentDecide(ulong offset, ulong length, int expected)
    {
        using AddressSpace space = NewSpace(TransparentHugePageMode.Always);
        MapFixed(space, Base + offset, length);

        Assert.Equal([expected], Eligible(space));
    }

    [Fact]
    public void SharedAnonymousMemoryIsNotEligible()
    {
        using AddressSpace space = NewSpace(TransparentHugePageMode.Always);
        space.Map(Base, 2 * PmdSpan, Protection.ReadWrite, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed);

        Assert.Equal([0], Eligible(space));
    }

    [Fact]
    public void AMappingSplitByAdviceAnswersPerPart()
    {
        using AddressSpace space = NewSpace(TransparentHugePageMode.Madvise);
        ulong a = MapFixed(space, Base, 4 * PmdSpan);
        space.Advise(a, PmdSpan, Advice.HugePage);
        space.Advise(a + 2 * PmdSpan, 2 * PmdSpan - Page, Advice.HugePage);

        // [a, +2 MiB) advised; [+2 MiB, +4 MiB) not; [+4 MiB, +8 MiB - 4 KiB) advised with one whole block; the last page not.
        Assert.Equal([1, 0, 1, 0], Eligible(space));
        Assert.Contains("THPeligible:           1\n", space.GetSmaps(), StringComparison.Ordinal);
    }

    private static AddressSpace NewSpace(TransparentHugePageMode mode) =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 32 << 20, TransparentHugePages = mode });

    private static int[] Eligible(AddressSpace space) =>
        space.GetSmaps().Split('\n').Where(l => l.StartsWith("THPeligible:", StringComparison.Ordinal))
            .Select(l => int.Parse(l["THPeligible:".Length..].Trim())).ToArray();
}
