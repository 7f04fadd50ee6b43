using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Numerics;

namespace Faultline.Cli.Commands;

/// <summary>
/// The commands' option checks, as System.CommandLine parsers and validators: a bad value is a parse error (one line,
/// exit 2) found before anything runs, never an exception in the middle of a run.
/// </summary>
internal static class OptionChecks
{
    /// <summary>A parser for a number in [<paramref name="minimum"/>, <paramref name="maximum"/>]; no value gives <paramref name="fallback"/>.</summary>
    public static Func<ArgumentResult, T> Number<T>(string option, T minimum, T maximum, T fallback)
        where T : INumber<T>, IParsable<T> => result =>
    {
        if (result.Tokens.Count == 0)
        {
            return fallback;
        }
        string text = result.Tokens[0].Value;
        if (T.TryParse(text, CultureInfo.InvariantCulture, out T? value) && value >= minimum && value <= maximum)
        {
            return value;
        }
        result.AddError($"{option}: '{text}' is not a number in [{minimum}, {maximum}]");
        return fallback;
    };

    /// <summary>Checks a text option with <paramref name="parse"/>, whose <see cref="ArgumentException"/> becomes the error.</summary>
    public static void Parses(Option<string?> option, Action<string> parse) =>
        option.Validators.Add(result =>
        {
            string? text = result.GetValueOrDefault<string?>();
            if (text is null)
            {
                return;
            }
            try
            {
                parse(text);
            }
            catch (ArgumentException e)
            {
                result.AddError(e.Message.StartsWith(option.Name, StringComparison.Ordinal) ? e.Message : $"{option.Name}: {e.Message}");
            }
        });

    /// <summary>The value <paramref name="parse"/> returns, or null when it throws <see cref="ArgumentException"/> (reported by the option's own check).</summary>
    public static T? TryParse<T>(Func<T> parse) where T : class
    {
        try
        {
            return parse();
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>
    /// Makes <paramref name="option"/> an output file that can be written: a legal path whose folder exists, not a
    /// folder, writable (probed without changing an existing file; a probe file is removed again).
    /// </summary>
    public static void OutputFile<T>(Option<T> option)
    {
        option.AcceptLegalFilePathsOnly();
        option.Validators.Add(result =>
        {
            string? path = result.GetValueOrDefault<T>() as string;
            if (path is not null && WhyNotWritable(path) is string reason)
            {
                result.AddError($"{option.Name}: cannot write '{path}': {reason}");
            }
        });
    }

    private static string? WhyNotWritable(string path)
    {
        string full;
        try
        {
            full = Path.GetFullPath(path);
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return e.Message;
        }
        if (Directory.Exists(full))
        {
            return "it is a folder";
        }
        string? folder = Path.GetDirectoryName(full);
        if (folder is null || !Directory.Exists(folder))
        {
            return $"no folder {folder}";
        }
        try
        {
            bool existed = File.Exists(full);
            using (new FileStream(full, existed ? FileMode.Open : FileMode.CreateNew, FileAccess.Write))
            {
            }
            if (!existed)
            {
                File.Delete(full);
            }
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return e.Message;
        }
    }
}
