using System.Globalization;

namespace Faultline.Tests.Conformance.Stack;

/// <summary>
/// A stack-growth script in the language of <c>Native/stack_oracle.c</c> (map, munmap, protect, write, read,
/// report), with the region its reports cover and the limits both sides run under.
/// </summary>
/// <param name="Name">What the script shows (for failure messages).</param>
/// <param name="RegionStart">First address the reports cover.</param>
/// <param name="RegionBytes">Bytes the reports cover.</param>
/// <param name="StackLimit"><c>RLIMIT_STACK</c> in bytes (<see cref="ulong.MaxValue"/>: unlimited).</param>
/// <param name="MemoryLockLimit"><c>RLIMIT_MEMLOCK</c> without <c>CAP_IPC_LOCK</c>, or null for the host's own setting.</param>
/// <param name="Steps">One step a line.</param>
internal sealed record StackScript(string Name, ulong RegionStart, ulong RegionBytes, ulong StackLimit, ulong? MemoryLockLimit, IReadOnlyList<string> Steps)
{
    /// <summary>The script as the reference program reads it.</summary>
    public string ToText() => string.Concat(Steps.Select(s => s + "\n"));

    /// <summary>The program's arguments after its path.</summary>
    public string[] Arguments() =>
    [
        Hex(RegionStart), Hex(RegionBytes), Hex(StackLimit),
        MemoryLockLimit is { } limit ? Hex(limit) : "-",
    ];

    /// <summary>A number as a step writes it.</summary>
    public static string Hex(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}
