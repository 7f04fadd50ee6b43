using System.Globalization;
using System.Text;

namespace Faultline.Cli.Replay;

/// <summary>What one replay of a trace on one fault path found.</summary>
/// <remarks>Filled by the replay one event at a time (never concurrently); read after it.</remarks>
internal sealed class ReplayReport
{
    /// <summary>The path's name.</summary>
    public required string Path { get; init; }

    /// <summary>Memory calls and faults replayed or reported as unmodelled.</summary>
    public int Calls { get; set; }

    /// <summary>Calls and faults with the kernel's result.</summary>
    public int Equal { get; set; }

    /// <summary>Calls and faults with another result.</summary>
    public List<ReplayDifference> Differences { get; } = [];

    /// <summary>Calls not replayed, each with why.</summary>
    public List<(string Call, string Reason)> Unmodelled { get; } = [];

    /// <summary>File mappings replayed as anonymous memory: the files and how many mappings of each.</summary>
    public SortedDictionary<string, int> StandIns { get; } = new(StringComparer.Ordinal);

    /// <summary>Faults among <see cref="Calls"/>.</summary>
    public int Faults { get; set; }

    /// <summary>Forked address spaces, execs and threads (clone with CLONE_VM) the replay followed.</summary>
    public int Forks { get; set; }

    /// <inheritdoc cref="Forks"/>
    public int Execs { get; set; }

    /// <inheritdoc cref="Forks"/>
    public int Threads { get; set; }

    /// <summary>The summary line: <c>calls N, equal E, differences D, unmodelled U</c>.</summary>
    public string Summary => Line(Calls, Equal, Differences.Count, Unmodelled.Count);

    /// <summary>A summary line of the given counts.</summary>
    public static string Line(int calls, int equal, int differences, int unmodelled) =>
        string.Create(CultureInfo.InvariantCulture, $"calls {calls}, equal {equal}, differences {differences}, unmodelled {unmodelled}");

    // "[tid] mmap(...) = ..." → mmap; "[tid] read fault at ..." → fault.
    private static string NameOf(string call)
    {
        int start = call.IndexOf(' ') + 1, open = call.IndexOf('(');
        return open > start ? call[start..open] : "fault";
    }

    /// <summary>The report as text: every difference with its context, the stand-ins, the unmodelled calls by name and reason.</summary>
    public string Render()
    {
        var text = new StringBuilder();
        foreach (ReplayDifference d in Differences)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{Path}: difference: {d.Call}");
            text.AppendLine(CultureInfo.InvariantCulture, $"  kernel:    {d.Kernel}");
            text.AppendLine(CultureInfo.InvariantCulture, $"  faultline: {d.Faultline}");
            foreach (string before in d.Before)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"  after:     {before}");
            }
        }
        if (StandIns.Count > 0)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"{Path}: stand-ins: {StandIns.Values.Sum()} file mapping(s) of {StandIns.Count} file(s) replayed as anonymous memory of the same shape:");
            foreach ((string file, int count) in StandIns)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"  {count,5} {file}");
            }
        }
        foreach (var group in Unmodelled.GroupBy(u => (Name: NameOf(u.Call), u.Reason)))
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"{Path}: unmodelled: {group.Key.Name} x{group.Count()}: {group.Key.Reason} (first: {group.First().Call})");
        }
        text.AppendLine(CultureInfo.InvariantCulture,
            $"{Path}: {Calls - Faults} calls and {Faults} faults in {Execs} exec(s), {Forks} fork(s), {Threads} thread(s) and vfork(s); {Summary}");
        return text.ToString();
    }
}
