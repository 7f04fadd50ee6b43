using Xunit;

namespace Faultline.Tests.Support;

/// <summary>
/// Tests that measure process-wide state (live arena bytes) or that count a thread's managed allocations: they run
/// alone, after the parallel tests, so no other test creates or releases address spaces meanwhile, and no other
/// test's allocations and collections run beside a count.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ProcessWideStateCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Process-wide state";
}
