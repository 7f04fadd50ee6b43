namespace Faultline.Cli.Running;

/// <summary>How many threads a run has: <paramref name="Threads"/> faulting workers and <paramref name="Churn"/> churn workers.</summary>
internal readonly record struct RunShape(int Threads, int Churn)
{
    /// <summary>All workers.</summary>
    public int Workers => Threads + Churn;
}
