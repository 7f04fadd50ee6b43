using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>Conformance classes run one at a time: they read this process's /proc/self/maps and pagemap.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class HostRegionCollection
{
    public const string Name = "host region";
}
