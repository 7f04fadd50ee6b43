namespace Faultline;

/// <summary>One mapping of an address space, as <c>/proc/pid/maps</c> shows it.</summary>
/// <param name="Start">First address.</param>
/// <param name="End">End address, exclusive.</param>
/// <param name="Protection">Access bits.</param>
/// <param name="Shared">True for a shared mapping.</param>
/// <param name="Offset">File offset in bytes (0 for anonymous memory).</param>
/// <param name="Name">Name column (empty for private anonymous memory, <c>/dev/zero (deleted)</c> for shared anonymous memory).</param>
/// <remarks>An immutable snapshot: later changes to the address space do not reach it.</remarks>
public readonly record struct MappingInfo(ulong Start, ulong End, Protection Protection, bool Shared, ulong Offset, string Name)
{
    /// <summary>The mapping's <c>/proc/pid/maps</c> line, addresses in hex: <c>7f0000000000-7f0000100000 rw-p 00000000 00:00 0</c>.</summary>
    public override string ToString() => Diagnostics.MapsFormatter.Line(this).TrimEnd();

    /// <summary>The device's major number (0: anonymous memory and shmem's internal mount).</summary>
    public int DeviceMajor { get; init; }

    /// <summary>The device's minor number: 0 for private anonymous memory, 1 for shared anonymous memory (shmem's mount).</summary>
    public int DeviceMinor { get; init; }

    /// <summary>The inode number: 0 for private anonymous memory; shared anonymous memory's own object's number.</summary>
    public ulong Inode { get; init; }

    /// <summary>The permission column, e.g. <c>rw-p</c>.</summary>
    public string Permissions =>
        $"{((Protection & Protection.Read) != 0 ? 'r' : '-')}{((Protection & Protection.Write) != 0 ? 'w' : '-')}{((Protection & Protection.Execute) != 0 ? 'x' : '-')}{(Shared ? 's' : 'p')}";
}
