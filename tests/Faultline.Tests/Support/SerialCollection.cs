using Xunit;

namespace Faultline.Tests.Support;

/// <summary>
/// Tests that build or run whole programs (dotnet pack, a tool install): they run alone, so their builds do not take
/// the cores that timing-sensitive stress tests measure on.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "Serial: whole programs";
}
