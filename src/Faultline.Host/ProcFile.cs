using Microsoft.Win32.SafeHandles;

namespace Faultline.Host;

/// <summary>
/// Reads a whole /proc seq_file into a reusable per-thread buffer. The kernel generates these
/// files on every read, so we read sequentially with large chunks (each read() returns whole
/// lines) and reuse the buffer to avoid allocating a fresh multi-hundred-KiB string per step.
/// </summary>
internal static class ProcFile
{
    [ThreadStatic]
    private static byte[]? s_buffer;

    /// <summary>Reads <paramref name="path"/> completely and returns the filled part of the thread's buffer.</summary>
    /// <param name="path">A /proc file path.</param>
    /// <returns>The file's bytes; valid until the next call on this thread.</returns>
    public static ReadOnlySpan<byte> ReadAll(string path)
    {
        byte[] buffer = s_buffer ??= new byte[256 * 1024];
        using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        int total = 0;
        while (true)
        {
            if (buffer.Length - total < 64 * 1024)
            {
                Array.Resize(ref buffer, buffer.Length * 2);
                s_buffer = buffer;
            }

            // Sequential offsets keep seq_file on its fast path (no re-traversal from the start).
            int n = RandomAccess.Read(handle, buffer.AsSpan(total), total);
            if (n <= 0)
            {
                break;
            }

            total += n;
        }

        return buffer.AsSpan(0, total);
    }

    /// <summary>Parses lowercase/uppercase hex digits; stops at the first non-hex byte.</summary>
    /// <param name="s">Input, advanced past the digits.</param>
    /// <returns>The value.</returns>
    public static ulong ParseHex(ref ReadOnlySpan<byte> s)
    {
        ulong v = 0;
        int i = 0;
        for (; i < s.Length; i++)
        {
            int c = s[i];
            int d = c >= '0' && c <= '9' ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                : -1;
            if (d < 0)
            {
                break;
            }

            v = (v << 4) | (uint)d;
        }

        s = s[i..];
        return v;
    }

    /// <summary>Parses decimal digits; stops at the first non-digit.</summary>
    /// <param name="s">Input, advanced past the digits.</param>
    /// <returns>The value.</returns>
    public static ulong ParseDec(ref ReadOnlySpan<byte> s)
    {
        ulong v = 0;
        int i = 0;
        for (; i < s.Length && s[i] >= '0' && s[i] <= '9'; i++)
        {
            v = (v * 10) + (uint)(s[i] - '0');
        }

        s = s[i..];
        return v;
    }

    /// <summary>Returns the next token delimited by spaces and advances past it.</summary>
    /// <param name="s">Input, advanced past the token and the following spaces.</param>
    /// <returns>The token.</returns>
    public static ReadOnlySpan<byte> Token(ref ReadOnlySpan<byte> s)
    {
        s = SkipSpaces(s);
        int i = s.IndexOf((byte)' ');
        if (i < 0)
        {
            i = s.Length;
        }

        ReadOnlySpan<byte> t = s[..i];
        s = SkipSpaces(s[i..]);
        return t;
    }

    /// <summary>Skips leading spaces.</summary>
    /// <param name="s">Input.</param>
    /// <returns>The input without leading spaces.</returns>
    public static ReadOnlySpan<byte> SkipSpaces(ReadOnlySpan<byte> s)
    {
        int i = 0;
        while (i < s.Length && s[i] == ' ')
        {
            i++;
        }

        return s[i..];
    }

    /// <summary>Splits off the next line (without '\n').</summary>
    /// <param name="s">Input, advanced past the line and its newline.</param>
    /// <returns>The line.</returns>
    public static ReadOnlySpan<byte> NextLine(ref ReadOnlySpan<byte> s)
    {
        int nl = s.IndexOf((byte)'\n');
        ReadOnlySpan<byte> line;
        if (nl < 0)
        {
            line = s;
            s = default;
        }
        else
        {
            line = s[..nl];
            s = s[(nl + 1)..];
        }

        return line;
    }
}
