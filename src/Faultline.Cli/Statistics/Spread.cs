namespace Faultline.Cli.Statistics;

/// <summary>The median and the range (min–max) of one figure over the repeats of a case.</summary>
/// <param name="Median">The middle value; the mean of the two middle values for an even count.</param>
/// <param name="Min">The smallest value.</param>
/// <param name="Max">The largest value.</param>
/// <param name="Count">How many values.</param>
internal readonly record struct Spread(double Median, double Min, double Max, int Count)
{
    /// <summary>The spread of <paramref name="values"/>.</summary>
    /// <exception cref="ArgumentException">No values.</exception>
    public static Spread Of(IEnumerable<double> values)
    {
        double[] sorted = values.Order().ToArray();
        if (sorted.Length == 0)
        {
            throw new ArgumentException("a spread needs at least one value", nameof(values));
        }
        int middle = sorted.Length / 2;
        double median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        return new Spread(median, sorted[0], sorted[^1], sorted.Length);
    }
}
