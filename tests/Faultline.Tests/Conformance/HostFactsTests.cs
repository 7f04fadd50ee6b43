using Faultline.Host;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Conformance;

/// <summary>
/// The probed host facts decide how Faultline is configured for the oracle: only the probed zero-page setting
/// reproduces the host's smaps after reads, so the suite compares residency exactly on either kind of host.
/// </summary>
[Collection(HostRegionCollection.Name)]
public class HostFactsTests
{
    private const int Pages = 8;

    private readonly ITestOutputHelper _output;

    public HostFactsTests(ITestOutputHelper output) => _output = output;

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void OnlyTheProbedZeroPageSettingMatchesTheHostAfterReads(bool mapZeroPageOnRead)
    {
        _output.WriteLine(HostFacts.Current.Describe());
        using var region = new HostRegion(2 * Pages * MirroredSpace.Page);
        using var mirror = new MirroredSpace(region, FaultPath.MmapLock, mapZeroPageOnRead);
        Assert.Equal((0, 0), mirror.Map(mirror.Start, Pages * MirroredSpace.Page, Linux.PROT_READ | Linux.PROT_WRITE,
            Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED));
        for (int i = 0; i < Pages; i++)
        {
            Assert.Null(mirror.Touch(mirror.Start + (ulong)i * MirroredSpace.Page, write: false, 0));
        }

        // The zero page and a private page are both present in pagemap; only Rss tells them apart.
        Assert.Null(mirror.CompareResidency());
        string? smaps = mirror.CompareSmaps();
        if (mapZeroPageOnRead == HostFacts.Current.ReadFaultMapsZeroPage)
        {
            Assert.Null(smaps);
        }
        else
        {
            Assert.NotNull(smaps);
            Assert.StartsWith("Rss of", smaps);
            _output.WriteLine($"the other setting is detected: {smaps}");
        }
    }
}
