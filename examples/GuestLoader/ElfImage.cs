using ELFSharp.ELF;
using ELFSharp.ELF.Segments;

namespace Faultline.Examples.GuestLoader;

/// <summary>
/// The parts of an ELF executable a loader needs (read with ELFSharp): its loadable segments placed as Linux's
/// <c>load_elf_binary</c> places them with randomisation off (a position-independent executable at
/// <c>ELF_ET_DYN_BASE</c>, 0x555555554000 on x86-64), the entry point and the interpreter's path.
/// </summary>
public sealed class ElfImage
{
    /// <summary>Where x86-64 Linux loads an <c>ET_DYN</c> executable when randomisation is off.</summary>
    public const ulong DynamicLoadBase = 0x5555_5555_4000;

    private ElfImage(string path, byte[] bytes, IReadOnlyList<ElfSegment> segments, ulong entry, string? interpreter)
    {
        Path = path;
        Bytes = bytes;
        Segments = segments;
        Entry = entry;
        Interpreter = interpreter;
    }

    /// <summary>The file it was read from.</summary>
    public string Path { get; }

    /// <summary>The whole file (segments are demand-loaded from it).</summary>
    public byte[] Bytes { get; }

    /// <summary>The <c>PT_LOAD</c> segments, relocated.</summary>
    public IReadOnlyList<ElfSegment> Segments { get; }

    /// <summary>The relocated entry point.</summary>
    public ulong Entry { get; }

    /// <summary>The guest address of the <c>PT_INTERP</c> string, or 0 for a static executable.</summary>
    public ulong InterpreterAddress { get; private init; }

    /// <summary>The interpreter path as the file holds it (checked against guest memory), or null.</summary>
    public string? Interpreter { get; }

    /// <summary>Reads an x86-64 or arm64 ELF executable.</summary>
    /// <exception cref="InvalidDataException">Not a 64-bit ELF executable with loadable segments.</exception>
    public static ElfImage Load(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        using var stream = new MemoryStream(bytes, writable: false);
        if (!ELFReader.TryLoad(stream, shouldOwnStream: false, out IELF? any) || any is not ELF<ulong> elf)
        {
            throw new InvalidDataException("not a 64-bit ELF file");
        }
        using (elf)
        {
            ulong bias = elf.Type switch
            {
                FileType.Executable => 0,
                FileType.SharedObject => DynamicLoadBase,
                _ => throw new InvalidDataException($"an ELF {elf.Type} is not an executable"),
            };
            var segments = new List<ElfSegment>();
            ulong interpreterAddress = 0;
            string? interpreter = null;
            foreach (Segment<ulong> segment in elf.Segments)
            {
                if (segment.Type == SegmentType.Load)
                {
                    segments.Add(new ElfSegment(segment.Address + bias, segment.Size, (ulong)segment.Offset,
                        (ulong)segment.FileSize, ProtectionOf(segment.Flags)));
                }
                else if (segment.Type == SegmentType.Interpreter)
                {
                    interpreterAddress = segment.Address + bias;
                    interpreter = System.Text.Encoding.ASCII.GetString(segment.GetFileContents()).TrimEnd('\0');
                }
            }
            if (segments.Count == 0)
            {
                throw new InvalidDataException("the ELF file has no loadable segment");
            }
            return new ElfImage(path, bytes, segments, elf.EntryPoint + bias, interpreter) { InterpreterAddress = interpreterAddress };
        }
    }

    /// <summary>
    /// The contents of the guest page at <paramref name="page"/> as <c>load_elf_binary</c> leaves it: the file bytes of
    /// every segment that covers part of it, zeros elsewhere (the rest of a .bss page included).
    /// </summary>
    public void FillPage(ulong page, Span<byte> destination)
    {
        destination.Clear();
        foreach (ElfSegment segment in Segments)
        {
            ulong start = Math.Max(page, segment.Address);
            ulong end = Math.Min(page + (ulong)destination.Length, segment.Address + segment.FileSize);
            if (start < end)
            {
                ulong fileAt = segment.FileOffset + (start - segment.Address);
                Bytes.AsSpan((int)fileAt, (int)(end - start)).CopyTo(destination[(int)(start - page)..]);
            }
        }
    }

    private static Protection ProtectionOf(SegmentFlags flags) =>
        (flags.HasFlag(SegmentFlags.Read) ? Protection.Read : Protection.None)
        | (flags.HasFlag(SegmentFlags.Write) ? Protection.Write : Protection.None)
        | (flags.HasFlag(SegmentFlags.Execute) ? Protection.Execute : Protection.None);
}
