using FsCheck;
using FsCheck.Fluent;

namespace Faultline.Tests.Conformance;

/// <summary>One step of a file-mapping sequence, run alike on the host and on Faultline (<see cref="FileOracle"/>).</summary>
/// <param name="Kind">What: a store, a load, ftruncate, pwrite, msync, or munmap and mmap again.</param>
/// <param name="Offset">The byte in the mapping, or the file offset of a pwrite.</param>
/// <param name="Value">The byte stored.</param>
/// <param name="Size">The new length of a truncate, the count of a pwrite.</param>
/// <param name="Shared">Through the shared mapping (else the private one).</param>
public readonly record struct FileOp(FileOpKind Kind, int Offset, byte Value, int Size, bool Shared)
{
    /// <summary>Bytes each mapping spans.</summary>
    public const int MappedBytes = FileOracle.Pages * PageGeometry.PageSize;

    /// <summary>A step drawn from <paramref name="random"/>: stores and loads three times in ten each, the rest once.</summary>
    public static FileOp Next(Random random)
    {
        int offset = random.Next(MappedBytes);
        bool shared = random.Next(2) == 0;
        FileOpKind kind = KindOf(random.Next(10));
        byte value = (byte)random.Next(256);
        int size = kind == FileOpKind.Truncate ? random.Next(MappedBytes + 2 * PageGeometry.PageSize) : random.Next(1, 2 * PageGeometry.PageSize);
        return new FileOp(kind, offset, value, size, shared);
    }

    /// <summary>The same kinds, in the same proportions as <see cref="Next"/>, as an FsCheck generator.</summary>
    public static Gen<FileOp> Generator { get; } =
        from kind in Gen.Choose(0, 9)
        from offset in Gen.Choose(0, MappedBytes - 1)
        from value in Gen.Choose(0, 255)
        from size in Gen.Choose(1, MappedBytes + 2 * PageGeometry.PageSize)
        from shared in Gen.Elements(true, false)
        select new FileOp(KindOf(kind), offset, (byte)value, KindOf(kind) == FileOpKind.Pwrite ? 1 + size % (2 * PageGeometry.PageSize) : size, shared);

    private static FileOpKind KindOf(int draw) => draw switch
    {
        < 3 => FileOpKind.Store,
        < 6 => FileOpKind.Load,
        6 => FileOpKind.Truncate,
        7 => FileOpKind.Pwrite,
        8 => FileOpKind.Msync,
        _ => FileOpKind.Remap,
    };

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        FileOpKind.Store => $"store {Where}",
        FileOpKind.Load => $"load {Where}",
        FileOpKind.Truncate => $"truncate {Size}",
        FileOpKind.Pwrite => $"pwrite {Size} at {Offset}",
        FileOpKind.Msync => "msync",
        _ => "munmap and mmap",
    };

    private string Where => $"{(Shared ? "shared" : "private")}+0x{Offset:x}";
}
