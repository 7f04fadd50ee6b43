using System.Text;

namespace Faultline.Host;

/// <summary>Reads this process's <c>/proc/self/maps</c>.</summary>
public static class HostMaps
{
    private const string MapsPath = "/proc/self/maps";

    /// <summary>
    /// Returns the maps lines intersecting [<paramref name="start"/>, <paramref name="end"/>), clipped
    /// to that range. Clipping matters because a reserved region can merge with a neighbouring VMA
    /// the runtime created; for file-backed (and shared-anonymous) lines the offset is advanced by
    /// the clipped amount so the result is what the kernel would print for that sub-range.
    /// </summary>
    /// <param name="start">Start of the range.</param>
    /// <param name="end">End of the range (exclusive).</param>
    /// <returns>The clipped lines in address order.</returns>
    public static List<MapsLine> ReadRegion(ulong start, ulong end)
    {
        List<MapsLine> result = [];
        ReadOnlySpan<byte> text = ProcFile.ReadAll(MapsPath);
        while (!text.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcFile.NextLine(ref text);
            if (line.IsEmpty)
            {
                continue;
            }

            ReadOnlySpan<byte> s = line;
            ulong vs = ProcFile.ParseHex(ref s);
            if (vs >= end)
            {
                break; // maps is sorted by address; nothing later can intersect.
            }

            s = s[1..]; // '-'
            ulong ve = ProcFile.ParseHex(ref s);
            if (ve <= start)
            {
                continue;
            }

            MapsLine parsed = ParseRest(vs, ve, s);
            ulong cs = Math.Max(vs, start);
            ulong ce = Math.Min(ve, end);
            if (cs != vs || ce != ve)
            {
                ulong offset = parsed.Inode != 0 || parsed.Offset != 0 ? parsed.Offset + (cs - vs) : 0;
                parsed = parsed with { Start = cs, End = ce, Offset = offset };
            }

            result.Add(parsed);
        }

        return result;
    }

    /// <summary>Returns every line of /proc/self/maps, unclipped.</summary>
    /// <returns>All VMAs in address order.</returns>
    public static List<MapsLine> ReadAll() => ReadRegion(0, ulong.MaxValue);

    /// <summary>
    /// True if any VMA intersects [<paramref name="start"/>, <paramref name="end"/>). Cheaper than
    /// <see cref="ReadRegion"/> because it allocates nothing.
    /// </summary>
    /// <param name="start">Start of the range.</param>
    /// <param name="end">End of the range (exclusive).</param>
    /// <returns>Whether anything is mapped there.</returns>
    public static bool AnyMapped(ulong start, ulong end)
    {
        if (end <= start)
        {
            return false;
        }

        ReadOnlySpan<byte> text = ProcFile.ReadAll(MapsPath);
        while (!text.IsEmpty)
        {
            ReadOnlySpan<byte> s = ProcFile.NextLine(ref text);
            if (s.IsEmpty)
            {
                continue;
            }

            ulong vs = ProcFile.ParseHex(ref s);
            if (vs >= end)
            {
                return false;
            }

            s = s[1..];
            ulong ve = ProcFile.ParseHex(ref s);
            if (ve > start)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Finds the lowest address ≥ <paramref name="from"/>, aligned to <paramref name="align"/>, at
    /// which [addr, addr + <paramref name="size"/>) is free of VMAs and of <paramref name="avoid"/>.
    /// </summary>
    internal static ulong FindGap(ulong from, ulong size, ulong align, IReadOnlyList<(ulong Start, ulong End)> avoid)
    {
        List<(ulong Start, ulong End)> busy = [.. avoid];
        ReadOnlySpan<byte> text = ProcFile.ReadAll(MapsPath);
        while (!text.IsEmpty)
        {
            ReadOnlySpan<byte> s = ProcFile.NextLine(ref text);
            if (s.IsEmpty)
            {
                continue;
            }

            ulong vs = ProcFile.ParseHex(ref s);
            s = s[1..];
            ulong ve = ProcFile.ParseHex(ref s);
            busy.Add((vs, ve));
        }

        busy.Sort();
        ulong candidate = AlignUp(from, align);
        foreach ((ulong bs, ulong be) in busy)
        {
            if (be <= candidate)
            {
                continue;
            }

            if (bs >= candidate + size)
            {
                break;
            }

            candidate = AlignUp(be, align);
        }

        return candidate + size <= Linux.TASK_SIZE ? candidate : 0;
    }

    private static ulong AlignUp(ulong v, ulong a) => (v + a - 1) & ~(a - 1);

    private static MapsLine ParseRest(ulong vs, ulong ve, ReadOnlySpan<byte> s)
    {
        ReadOnlySpan<byte> perms = ProcFile.Token(ref s);
        ReadOnlySpan<byte> offTok = ProcFile.Token(ref s);
        ulong offset = ProcFile.ParseHex(ref offTok);
        ReadOnlySpan<byte> dev = ProcFile.Token(ref s);
        ulong inode = ProcFile.ParseDec(ref s);
        s = ProcFile.SkipSpaces(s);
        return new MapsLine(
            vs,
            ve,
            Intern(perms),
            offset,
            dev.SequenceEqual("00:00"u8) ? "00:00" : Encoding.ASCII.GetString(dev),
            inode,
            s.IsEmpty ? string.Empty : Encoding.UTF8.GetString(s));
    }

    /// <summary>Perms take only 16 values; reuse the strings instead of allocating per line.</summary>
    private static string Intern(ReadOnlySpan<byte> perms)
    {
        if (perms.Length == 4)
        {
            int idx = (perms[0] == 'r' ? 1 : 0) | (perms[1] == 'w' ? 2 : 0) | (perms[2] == 'x' ? 4 : 0) | (perms[3] == 's' ? 8 : 0);
            string cached = PermStrings[idx];
            bool same = true;
            for (int i = 0; i < 4; i++)
            {
                same &= perms[i] == cached[i];
            }

            if (same)
            {
                return cached;
            }
        }

        return Encoding.ASCII.GetString(perms);
    }

    private static readonly string[] PermStrings = BuildPermStrings();

    private static string[] BuildPermStrings()
    {
        string[] a = new string[16];
        for (int i = 0; i < 16; i++)
        {
            a[i] = string.Concat(
                (i & 1) != 0 ? "r" : "-",
                (i & 2) != 0 ? "w" : "-",
                (i & 4) != 0 ? "x" : "-",
                (i & 8) != 0 ? "s" : "p");
        }

        return a;
    }
}
