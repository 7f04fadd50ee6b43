using System.Text.Json;
using System.Text.Json.Serialization;
using Faultline.Cli.Running;

namespace Faultline.Cli.Reporting;

/// <summary>
/// The <c>--json</c> file: <c>{"machine": {...}, "results": [{"workload", "path", "threads", "churn", "seconds",
/// "ops", "ops_per_sec", "faults", "faults_per_sec", "ns_per_fault", "churn_ops_per_sec", "counters": {...}, ...}]}</c>.
/// Counter names keep their kernel spelling (<c>VMA_LOCK_SUCCESS</c>, <c>spf_success</c>, <c>ru_minflt</c>).
/// </summary>
internal static class JsonReport
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The report as JSON text.</summary>
    public static string Render(MachineInfo machine, IReadOnlyList<BenchResult> results) =>
        JsonSerializer.Serialize(new Report(machine, results), Options);

    /// <summary>Writes the report.</summary>
    public static void Write(string file, MachineInfo machine, IReadOnlyList<BenchResult> results) =>
        File.WriteAllText(file, Render(machine, results) + "\n");

    private sealed record Report(MachineInfo Machine, IReadOnlyList<BenchResult> Results);
}
