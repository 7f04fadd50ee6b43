namespace Faultline.Cli.Statistics;

/// <summary>
/// The order cases run in: every case once per repeat, each repeat in its own shuffled order, so that drift and a
/// busy neighbour during one stretch of the run hit every path alike instead of always the same one.
/// </summary>
internal static class RepeatSchedule
{
    /// <summary>One shuffled copy of <paramref name="cases"/> per repeat.</summary>
    /// <param name="cases">The cases, each run once per repeat.</param>
    /// <param name="repeats">How many repeats (at least 1).</param>
    /// <param name="random">The shuffler; a fixed one gives a reproducible order.</param>
    public static IReadOnlyList<IReadOnlyList<T>> Shuffled<T>(IReadOnlyList<T> cases, int repeats, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        var order = new List<IReadOnlyList<T>>(repeats);
        for (int repeat = 0; repeat < repeats; repeat++)
        {
            T[] shuffled = cases.ToArray();
            random.Shuffle(shuffled);
            order.Add(shuffled);
        }
        return order;
    }
}
