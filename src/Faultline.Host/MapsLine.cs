using System.Globalization;
using System.Text;

namespace Faultline.Host;

/// <summary>One line of <c>/proc/pid/maps</c>, i.e. one VMA (possibly clipped to a region).</summary>
/// <param name="Start">First address of the VMA (inclusive).</param>
/// <param name="End">End address of the VMA (exclusive).</param>
/// <param name="Perms">Four characters: r/w/x or '-', then 'p' (private) or 's' (shared), e.g. "rw-p".</param>
/// <param name="Offset">File offset in bytes (always 0 for private anonymous memory).</param>
/// <param name="Device">Device as "major:minor" in hex, "00:00" for anonymous memory.</param>
/// <param name="Inode">Inode number, 0 for anonymous memory.</param>
/// <param name="Name">Path or pseudo-name ("[heap]", "[anon:x]", "/dev/zero (deleted)"); empty when none.</param>
public sealed record MapsLine(ulong Start, ulong End, string Perms, ulong Offset, string Device, ulong Inode, string Name)
{
    /// <summary>
    /// Column the kernel pads to before printing a name: show_vma_header_prefix calls
    /// seq_setwidth(m, 25 + sizeof(void *) * 6 - 1) and seq_pad then adds one more space.
    /// </summary>
    private const int NamePadWidth = 25 + (8 * 6) - 1;

    /// <summary>Length of the VMA in bytes.</summary>
    public ulong Length => End - Start;

    /// <summary>
    /// Formats the line byte-for-byte as the kernel does (6.x show_map_vma):
    /// "%08lx-%08lx %s %08llx %s %lu " and then, only if there is a name, spaces up to column 72,
    /// one more space and the name. Note that a nameless line therefore ENDS WITH ONE SPACE, exactly
    /// like the real file; compare with <see cref="ToTrimmedString"/> if that is unwanted.
    /// </summary>
    /// <returns>The maps line without the trailing newline.</returns>
    public override string ToString()
    {
        StringBuilder sb = new(96);
        sb.Append(Start.ToString("x8", CultureInfo.InvariantCulture)).Append('-')
          .Append(End.ToString("x8", CultureInfo.InvariantCulture)).Append(' ')
          .Append(Perms).Append(' ')
          .Append(Offset.ToString("x8", CultureInfo.InvariantCulture)).Append(' ')
          .Append(Device).Append(' ')
          .Append(Inode.ToString(CultureInfo.InvariantCulture)).Append(' ');
        if (Name.Length > 0)
        {
            if (sb.Length < NamePadWidth)
            {
                sb.Append(' ', NamePadWidth - sb.Length);
            }

            sb.Append(' ').Append(Name);
        }

        return sb.ToString();
    }

    /// <summary>
    /// The same text as <see cref="ToString"/> with trailing whitespace removed, for comparisons
    /// that should not depend on the kernel's trailing space after a nameless line.
    /// </summary>
    /// <returns>The trimmed maps line.</returns>
    public string ToTrimmedString() => ToString().TrimEnd(' ');
}
