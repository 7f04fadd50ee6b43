using System.Globalization;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>One step of a fork script: which process does what, at which addresses.</summary>
/// <param name="Kind">The verb.</param>
/// <param name="Proc">The process that runs it (unused by <see cref="ForkStepKind.Report"/>).</param>
/// <param name="Address">The address (map, smap, protect, munmap, advise, write, read).</param>
/// <param name="Length">The length in bytes (map, protect, munmap, advise).</param>
/// <param name="Prot">PROT_* bits (map, protect).</param>
/// <param name="Value">The byte a write stores.</param>
/// <param name="Child">The new process's number (fork).</param>
/// <param name="Samples">The addresses a report reads in every process.</param>
/// <param name="Advice">The <c>MADV_*</c> advice (advise).</param>
internal sealed record ForkStep(
    ForkStepKind Kind,
    int Proc,
    ulong Address = 0,
    ulong Length = 0,
    int Prot = 0,
    byte Value = 0,
    int Child = 0,
    IReadOnlyList<ulong>? Samples = null,
    Advice Advice = Advice.Normal)
{
    /// <summary>The step as a line of the reference program's script.</summary>
    public string ToScriptLine() => Kind switch
    {
        ForkStepKind.Map => $"map {Proc} {Hex(Address)} {Hex(Length)} {Prot}",
        ForkStepKind.SharedMap => $"smap {Proc} {Hex(Address)} {Hex(Length)} {Prot}",
        ForkStepKind.Protect => $"protect {Proc} {Hex(Address)} {Hex(Length)} {Prot}",
        ForkStepKind.Munmap => $"munmap {Proc} {Hex(Address)} {Hex(Length)}",
        ForkStepKind.Advise => $"advise {Proc} {Hex(Address)} {Hex(Length)} {(int)Advice}",
        ForkStepKind.Write => $"write {Proc} {Hex(Address)} {Value}",
        ForkStepKind.Read => $"read {Proc} {Hex(Address)}",
        ForkStepKind.Fork => $"fork {Proc} {Child}",
        ForkStepKind.Exit => $"exit {Proc}",
        ForkStepKind.Report => string.Join(' ', (Samples ?? []).Select(Hex).Prepend("report")),
        _ => throw new InvalidOperationException($"unknown step kind {Kind}"),
    };

    public override string ToString() => ToScriptLine();

    private static string Hex(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);
}
