using System.Globalization;
using System.Text;

namespace Faultline.Cli.Replay;

/// <summary>The pieces of strace's text: arguments split at top-level commas, and their values.</summary>
internal static class ArgumentText
{
    /// <summary>
    /// Splits an argument list at the commas outside quotes, brackets, braces and parentheses; comments
    /// (<c>/* 47 vars */</c>) stay with their argument.
    /// </summary>
    public static IReadOnlyList<string> Split(string text)
    {
        var args = new List<string>();
        int depth = 0, angle = 0, start = 0;
        bool quoted = false;
        for (int i = 0; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                continue;
            }
            switch (c)
            {
                case '"':
                    quoted = true;
                    break;
                case '(' or '[' or '{':
                    depth++;
                    break;
                case ')' or ']' or '}':
                    depth = Math.Max(0, depth - 1);
                    break;
                // -y's file after an fd (3</path>), not a shift (1<<26) nor clone3's "=>".
                case '<' when i > 0 && char.IsAsciiDigit(text[i - 1]) && i + 1 < text.Length && text[i + 1] != '<' && text[i - 1] != '<':
                    depth++;
                    angle++;
                    break;
                case '>' when angle > 0:
                    depth--;
                    angle--;
                    break;
                case ',' when depth == 0:
                    args.Add(text[start..i].Trim());
                    start = i + 1;
                    break;
            }
        }
        string last = text[start..].Trim();
        if (last.Length > 0 || args.Count > 0)
        {
            args.Add(last);
        }
        return args;
    }

    /// <summary>
    /// The value of one argument: <c>NULL</c>, a decimal or hex number, an fd with its file (<c>3&lt;/path&gt;</c>: 3), or
    /// symbolic flags joined with <c>|</c> (names from <see cref="LinuxConstants"/>, hex and decimal parts too).
    /// </summary>
    /// <exception cref="FormatException">A name that is not known, or text that is not a value.</exception>
    public static ulong Value(string text)
    {
        text = text.Trim();
        int fileStart = text.IndexOf('<');
        if (fileStart > 0 && text.EndsWith('>'))
        {
            text = text[..fileStart];
        }
        if (text == "NULL")
        {
            return 0;
        }
        ulong value = 0;
        foreach (string part in text.Split('|'))
        {
            value |= Part(part.Trim()) ?? throw new FormatException($"'{part.Trim()}' is not a value strace prints (in '{text}')");
        }
        return value;
    }

    /// <summary>The file an fd argument names (<c>3&lt;/usr/lib/libc.so.6&gt;</c>), or null.</summary>
    public static string? FilePath(string text)
    {
        int start = text.IndexOf('<');
        return start > 0 && text.EndsWith('>') && text[..start].All(char.IsAsciiDigit) ? text[(start + 1)..^1] : null;
    }

    /// <summary>A string argument without its quotes and escapes (<c>"/usr/bin/perl"</c>).</summary>
    public static string Unquote(string text)
    {
        text = text.Trim();
        if (text.Length < 2 || text[0] != '"')
        {
            return text;
        }
        int end = text.LastIndexOf('"');
        var result = new StringBuilder();
        for (int i = 1; i < end; i++)
        {
            if (text[i] == '\\' && i + 1 < end)
            {
                char next = text[++i];
                if (next == 'x' && i + 2 < end)
                {
                    result.Append((char)Convert.ToByte(text.Substring(i + 1, 2), 16));
                    i += 2;
                }
                else
                {
                    result.Append(next switch { 'n' => '\n', 't' => '\t', _ => next });
                }
                continue;
            }
            result.Append(text[i]);
        }
        return result.ToString();
    }

    private static ulong? Part(string part)
    {
        if (part.StartsWith("0x", StringComparison.Ordinal)
            && ulong.TryParse(part.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong hex))
        {
            return hex;
        }
        if (long.TryParse(part, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long number))
        {
            return (ulong)number;
        }
        // strace writes a shifted field as NAME<<SHIFT (pkeys, huge page sizes of unknown names).
        int shift = part.IndexOf("<<", StringComparison.Ordinal);
        if (shift > 0 && Part(part[..shift]) is { } baseValue && int.TryParse(part.AsSpan(shift + 2), out int bits))
        {
            return baseValue << bits;
        }
        return LinuxConstants.Find(part);
    }
}
