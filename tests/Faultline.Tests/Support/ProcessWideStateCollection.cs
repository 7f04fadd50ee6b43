using Xunit;

namespace Faultline.Tests.Support;

/// <summary>
/// Tests that measure process-wide state (live arena bytes): they run alone, after the parallel tests, so no other
/// test creates or releases address spaces meanwhile.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideStateCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Process-wide state";
}
