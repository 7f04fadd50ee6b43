namespace Faultline.Cli.Stress;

/// <summary>What one stress worker did; written by that worker only.</summary>
internal sealed class StressStats
{
    /// <summary>Loop iterations.</summary>
    public long Iterations;
    /// <summary>Values and outcomes checked.</summary>
    public long Checks;
    /// <summary>Checks that failed.</summary>
    public long Mismatches;
    /// <summary>The first few failures.</summary>
    public readonly List<string> Errors = [];

    /// <summary>Counts a check; records a failure when <paramref name="ok"/> is false.</summary>
    public void Check(bool ok, Func<string> describe)
    {
        Checks++;
        if (!ok)
        {
            Mismatches++;
            if (Errors.Count < 5)
            {
                Errors.Add(describe());
            }
        }
    }
}
