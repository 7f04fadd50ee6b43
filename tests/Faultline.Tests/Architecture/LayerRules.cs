using System.Text.RegularExpressions;

namespace Faultline.Tests.Architecture;

/// <summary>
/// The layers of <c>src/Faultline</c>, lowest first, and a source scanner that finds references from a layer to a
/// layer above it: a <c>using</c> of a higher namespace, a qualified or partly qualified name in one, or a public
/// surface type (<c>AddressSpace</c>, <c>Cpu</c>, <c>FaultlineOptions</c>, …) named below the top. Comments and
/// string literals are removed first, so only code counts.
/// </summary>
internal static partial class LayerRules
{
    /// <summary>The folders (namespaces under <c>Faultline</c>) in dependency order: each may use only those before it.</summary>
    public static readonly string[] Layers =
        ["Concurrency", "VmStat", "Physical", "Paging", "Backing", "Areas", "Mm", "Faults", "Syscalls", "Diagnostics"];

    /// <summary>The root namespace's composition types: only the top (the root folder) may name them.</summary>
    public static readonly string[] SurfaceTypes =
        ["AddressSpace", "Cpu", "FaultlineOptions", "MemoryOperationException", "SegmentationFaultException", "GuestAccessException",
         "GuestOutOfMemoryException"];

    /// <summary>The rank of a layer; the root folder ranks above every layer.</summary>
    public static int RankOf(string? layer) => layer is null ? Layers.Length : Array.IndexOf(Layers, layer);

    /// <summary>Every upward reference in one file's text, as "what (line N)"; empty when the file keeps to its layer.</summary>
    public static List<string> Violations(string? layer, string source)
    {
        var found = new List<string>();
        int rank = RankOf(layer);
        if (rank < 0)
        {
            found.Add($"folder '{layer}' is not in the layer table");
            return found;
        }
        string code = StripCommentsAndStrings(source);
        string[] lines = code.Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            string line = lines[i];
            foreach (Match m in QualifiedNamespace().Matches(line))
            {
                string target = m.Groups[1].Value;
                int targetRank = RankOf(target);
                if (targetRank > rank)
                {
                    found.Add($"{layer ?? "(root)"} uses {target} (line {i + 1}: {line.Trim()})");
                }
            }
            if (layer is null)
            {
                continue;
            }
            foreach (string type in SurfaceTypes)
            {
                if (Regex.IsMatch(line, TypePosition(type)))
                {
                    found.Add($"{layer} names the public surface type {type} (line {i + 1}: {line.Trim()})");
                }
            }
        }
        return found;
    }

    /// <summary>The layer a source file belongs to: its first folder under <c>src/Faultline</c>, or null for the root.</summary>
    public static string? LayerOfFile(string sourceRoot, string file)
    {
        string relative = Path.GetRelativePath(sourceRoot, file);
        int slash = relative.IndexOfAny(['/', '\\']);
        return slash < 0 ? null : relative[..slash];
    }

    // The type name where only a type can stand: a declaration ("Cpu cpu", "Cpu? c", "List<Cpu>"), a construction,
    // a cast or type test, typeof, or a static call; a field or property that merely shares the name does not count.
    private static string TypePosition(string type) =>
        $@"(?<![\w.]){type}(?=\s+@?[A-Za-z_]\w*\s*[=;,)({{]|\s*[?\[>]|\s*\.\s*[A-Z]\w*\s*\()"
        + $@"|(?<=\bnew\s+){type}\b|(?<=typeof\(){type}\b|(?<=\b(?:is|as)\s+){type}\b|(?<=\(){type}\)";

    // Removes // and /* */ comments and string and char literals, keeping line breaks so line numbers stay right.
    private static string StripCommentsAndStrings(string source) =>
        CommentOrLiteral().Replace(source, m => new string('\n', m.Value.Count(c => c == '\n')));

    // "using Faultline.X", "Faultline.X.Type", or a partly qualified "X.Type" / "X.X" that C# resolves inside Faultline.*.
    [GeneratedRegex(@"(?:\bFaultline\.|(?<![\w.]))(Concurrency|VmStat|Physical|Paging|Backing|Areas|Mm|Faults|Syscalls|Diagnostics)\b(?=\s*[.;])")]
    private static partial Regex QualifiedNamespace();

    [GeneratedRegex(@"//[^\n]*|/\*.*?\*/|@""(?:[^""]|"""")*""|\$?""(?:\\.|[^""\\\n])*""|'(?:\\.|[^'\\\n])+'", RegexOptions.Singleline)]
    private static partial Regex CommentOrLiteral();
}
