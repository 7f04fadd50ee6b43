using System.Globalization;

namespace Faultline.Cli.Commands;

/// <summary>Parses the comma lists the commands accept (<c>--threads 1,2,4</c>).</summary>
internal static class ListOption
{
    /// <summary>Parses a comma list of integers at least <paramref name="minimum"/>.</summary>
    public static IReadOnlyList<int> Integers(string text, string option, int minimum)
    {
        var values = new List<int>();
        foreach (string item in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!int.TryParse(item, NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) || value < minimum || value > 1024)
            {
                throw new ArgumentException($"{option}: '{item}' is not an integer in [{minimum}, 1024]");
            }
            values.Add(value);
        }
        if (values.Count == 0)
        {
            throw new ArgumentException($"{option}: empty list");
        }
        return values.Distinct().ToList();
    }
}
