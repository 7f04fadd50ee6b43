namespace Faultline;

/// <summary>One mapping of an address space, as <c>/proc/pid/maps</c> shows it.</summary>
/// <param name="Start">First address.</param>
/// <param name="End">End address, exclusive.</param>
/// <param name="Protection">Access bits.</param>
/// <param name="Shared">True for a shared mapping.</param>
/// <param name="Offset">File offset in bytes (0 for anonymous memory).</param>
/// <param name="Name">Name column (empty for anonymous memory).</param>
public readonly record struct MappingInfo(ulong Start, ulong End, Protection Protection, bool Shared, ulong Offset, string Name)
{
    /// <summary>The permission column, e.g. <c>rw-p</c>.</summary>
    public string Permissions =>
        $"{((Protection & Protection.Read) != 0 ? 'r' : '-')}{((Protection & Protection.Write) != 0 ? 'w' : '-')}{((Protection & Protection.Execute) != 0 ? 'x' : '-')}{(Shared ? 's' : 'p')}";
}
