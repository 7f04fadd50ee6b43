using System.Text;

namespace Faultline.Host;

/// <summary>Reads this process's <c>/proc/self/smaps</c>.</summary>
public static class HostSmaps
{
    /// <summary>
    /// Returns the smaps entries of every VMA intersecting [<paramref name="start"/>,
    /// <paramref name="end"/>). The kernel still walks the page tables of every VMA of the process
    /// to produce the file, so this is far more expensive than <see cref="HostMaps.ReadRegion"/>;
    /// use <see cref="HostPagemap"/> for per-page residency in hot loops.
    /// </summary>
    /// <param name="start">Start of the range.</param>
    /// <param name="end">End of the range (exclusive).</param>
    /// <returns>Entries in address order (unclipped VMA bounds).</returns>
    public static List<SmapsEntry> ReadRegion(ulong start, ulong end) => Parse(ProcFile.ReadAll("/proc/self/smaps"), start, end);

    /// <summary>
    /// Parses smaps text (the kernel's, or any producer of the same format such as Faultline's <c>GetSmaps</c>) and
    /// returns the entries of every VMA intersecting [<paramref name="start"/>, <paramref name="end"/>).
    /// </summary>
    /// <param name="text">The smaps text, ASCII.</param>
    /// <param name="start">Start of the range.</param>
    /// <param name="end">End of the range (exclusive).</param>
    /// <returns>Entries in address order (unclipped VMA bounds).</returns>
    public static List<SmapsEntry> Parse(ReadOnlySpan<byte> text, ulong start, ulong end)
    {
        List<SmapsEntry> result = [];
        bool inRange = false;
        ulong vs = 0, ve = 0, size = 0, rss = 0, privateDirty = 0, anon = 0, referenced = 0, thp = 0, swap = 0, lazyFree = 0, locked = 0;
        string perms = string.Empty;
        while (!text.IsEmpty)
        {
            ReadOnlySpan<byte> line = ProcFile.NextLine(ref text);
            if (line.IsEmpty)
            {
                continue;
            }

            byte c = line[0];
            if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
            {
                // Header line of the next VMA (field names start with an uppercase letter).
                ReadOnlySpan<byte> s = line;
                vs = ProcFile.ParseHex(ref s);
                s = s[1..];
                ve = ProcFile.ParseHex(ref s);
                if (vs >= end)
                {
                    break;
                }

                inRange = ve > start;
                if (inRange)
                {
                    perms = Encoding.ASCII.GetString(ProcFile.Token(ref s));
                    size = rss = privateDirty = anon = referenced = thp = swap = lazyFree = locked = 0;
                }

                continue;
            }

            if (!inRange)
            {
                continue;
            }

            int colon = line.IndexOf((byte)':');
            if (colon < 0)
            {
                continue;
            }

            ReadOnlySpan<byte> key = line[..colon];
            ReadOnlySpan<byte> rest = ProcFile.SkipSpaces(line[(colon + 1)..]);
            if (key.SequenceEqual("VmFlags"u8))
            {
                // VmFlags is the last field of each VMA block.
                result.Add(new SmapsEntry(vs, ve, perms, size, rss, privateDirty, anon, referenced, thp, swap,
                    Encoding.ASCII.GetString(rest).TrimEnd(), lazyFree, locked));
                inRange = false;
                continue;
            }

            if (key.SequenceEqual("Size"u8))
            {
                size = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Rss"u8))
            {
                rss = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Private_Dirty"u8))
            {
                privateDirty = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Anonymous"u8))
            {
                anon = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Referenced"u8))
            {
                referenced = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("AnonHugePages"u8))
            {
                thp = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Swap"u8))
            {
                swap = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("LazyFree"u8))
            {
                lazyFree = ProcFile.ParseDec(ref rest);
            }
            else if (key.SequenceEqual("Locked"u8))
            {
                locked = ProcFile.ParseDec(ref rest);
            }
        }

        return result;
    }
}
