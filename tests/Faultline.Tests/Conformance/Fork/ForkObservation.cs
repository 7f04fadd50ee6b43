using System.Globalization;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// One thing a process saw at one step, in the reference program's output format <c>STEP PROC KIND KEY VALUE</c>:
/// a system call's errno, an access's outcome or byte, the maps of the region, one smaps field of one VMA, the fork
/// flags of one VMA.
/// </summary>
/// <param name="Step">The script step (-1 for facts probed before the script).</param>
/// <param name="Proc">The process (-1 for facts).</param>
/// <param name="Kind">map, protect, munmap, advise, write, read, fork, exit, maps, smaps, vmflags, present, value or
/// fact.</param>
/// <param name="Key">What was observed: an address, <c>ADDR+LEN</c>, <c>START-END:FIELD</c>, <c>START-END</c>, or
/// <c>-</c>.</param>
/// <param name="Value">The errno, byte, outcome (<c>ok</c>, <c>SEGV_MAPERR</c>, <c>SEGV_ACCERR</c>), maps, kB, fork
/// flags (<c>dc</c>, <c>wf</c>, comma-joined, or <c>-</c>) or the pagemap present bit.</param>
internal sealed record ForkObservation(int Step, int Proc, string Kind, string Key, string Value)
{
    /// <summary>Parses one output line.</summary>
    /// <exception cref="FormatException">The line is not five tokens with numeric step and process.</exception>
    public static ForkObservation Parse(string line)
    {
        string[] tokens = line.Split(' ');
        if (tokens.Length != 5
            || !int.TryParse(tokens[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int step)
            || !int.TryParse(tokens[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int proc))
        {
            throw new FormatException($"not an observation: '{line}'");
        }
        return new ForkObservation(step, proc, tokens[2], tokens[3], tokens[4]);
    }

    /// <summary>The observation's identity: what two runs of one script must both report.</summary>
    public (int Step, int Proc, string Kind, string Key) Identity => (Step, Proc, Kind, Key);

    public override string ToString() => $"{Step} {Proc} {Kind} {Key} {Value}";
}
