using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;

namespace Faultline.Benchmarks;

/// <summary>
/// Micro-benchmarks: <c>dotnet run -c Release --project bench/Faultline.Benchmarks -- --filter '*'</c>. The default job
/// is short (1 launch, 2 warm-up and 6 measured iterations), for 2-core shared machines; pass <c>--job</c> to override.
/// <c>-- --cpu-time [--repeat N] [--only TEXT]</c> times the TLB loops with the thread's CPU clock instead (<see cref="DataPathCpuTime"/>).
/// </summary>
internal static class Program
{
    private static void Main(string[] args)
    {
        if (args.Contains("--cpu-time"))
        {
            string? repeat = OptionValue(args, "--repeat");
            DataPathCpuTime.Run(repeat is null ? 9 : int.Parse(repeat, System.Globalization.CultureInfo.InvariantCulture), OptionValue(args, "--only"));
            return;
        }
        IConfig config = DefaultConfig.Instance
            .AddDiagnoser(MemoryDiagnoser.Default)
            .AddColumn(StatisticColumn.Median)
            .WithOptions(ConfigOptions.JoinSummary | ConfigOptions.DisableLogFile);
        if (!args.Any(a => a is "--job" or "-j"))
        {
            config = config.AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(6).WithId("Short6").AsDefault());
        }
        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args, config);
    }

    private static string? OptionValue(string[] args, string name)
    {
        int at = Array.IndexOf(args, name);
        return at >= 0 && at + 1 < args.Length ? args[at + 1] : null;
    }
}
