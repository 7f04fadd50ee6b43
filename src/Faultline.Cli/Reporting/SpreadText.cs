using System.Globalization;
using Faultline.Cli.Statistics;

namespace Faultline.Cli.Reporting;

/// <summary>How a <see cref="Spread"/> reads in the table: the median, then the range in brackets.</summary>
internal static class SpreadText
{
    /// <summary>A rate: <c>1.45M [1.40M–1.50M]</c>.</summary>
    public static string Rate(Spread s) => $"{Headline.Short(s.Median)} [{Headline.Short(s.Min)}–{Headline.Short(s.Max)}]";

    /// <summary>Nanoseconds: <c>657 [640–680]</c>, with a decimal below 10 ns.</summary>
    public static string Nanoseconds(Spread s) => $"{Ns(s.Median)} [{Ns(s.Min)}–{Ns(s.Max)}]";

    /// <summary>A ratio: <c>2.61x [2.50–2.70]</c>.</summary>
    public static string Ratio(Spread s) => Invariant($"{s.Median:0.00}x [{s.Min:0.00}–{s.Max:0.00}]");

    private static string Ns(double value) => value.ToString(value < 10 ? "0.00" : "N0", CultureInfo.InvariantCulture);

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
