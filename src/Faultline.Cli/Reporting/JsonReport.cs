using System.Text.Json;
using System.Text.Json.Serialization;

namespace Faultline.Cli.Reporting;

/// <summary>
/// The <c>--json</c> file, a <see cref="BenchReport"/> with snake_case names: <c>machine</c> (with the probed host
/// facts), <c>commit</c>, <c>repeats</c>, <c>seconds_per_run</c>; <c>results</c>, one row per run with its
/// <c>repeat</c> index (<c>workload</c>, <c>path</c>, <c>threads</c>, <c>churn</c>, <c>seconds</c>, <c>ops</c>,
/// <c>ops_per_sec</c>, <c>faults</c>, <c>faults_per_sec</c>, <c>ns_per_fault</c>, <c>churn_ops_per_sec</c>,
/// <c>counters</c>, ...); <c>floors</c> and <c>ratios</c> per repeat; <c>summary</c>, <c>ratio_summary</c> and
/// <c>floor_summary</c> with <c>{median, min, max, count}</c> per figure. Counter names keep their kernel spelling
/// (<c>vma_lock_success</c>, <c>speculative_pgfault</c>, <c>ru_minflt</c>).
/// </summary>
internal static class JsonReport
{
    private static readonly JsonSerializerOptions Options = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>The report as JSON text.</summary>
    public static string Render(BenchReport report) => JsonSerializer.Serialize(report, Options);

    /// <summary>Writes the report.</summary>
    public static void Write(string file, BenchReport report) => File.WriteAllText(file, Render(report) + "\n");
}
