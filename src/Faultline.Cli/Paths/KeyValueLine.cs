using System.Globalization;

namespace Faultline.Cli.Paths;

/// <summary>The output line of the kernel reference programs: <c>key=value</c> pairs of integers, separated by spaces.</summary>
internal static class KeyValueLine
{
    /// <summary>Parses <paramref name="line"/>; <paramref name="program"/> names the program in error messages.</summary>
    /// <exception cref="FormatException">A pair is not <c>key=integer</c>.</exception>
    public static IReadOnlyDictionary<string, long> Parse(string line, string program)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (string pair in line.Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int equals = pair.IndexOf('=');
            if (equals <= 0 || !long.TryParse(pair.AsSpan(equals + 1), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
            {
                throw new FormatException($"{program}: not key=integer: '{pair}' in '{line}'");
            }
            values[pair[..equals]] = value;
        }
        return values;
    }

    /// <summary>The value of <paramref name="key"/>.</summary>
    /// <exception cref="FormatException">The line has no such key.</exception>
    public static long Get(IReadOnlyDictionary<string, long> values, string key, string program, string line) =>
        values.TryGetValue(key, out long value) ? value : throw new FormatException($"{program}: no {key} in '{line}'");
}
