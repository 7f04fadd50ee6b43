using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Diagnosers;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Running;

namespace Faultline.Benchmarks;

/// <summary>
/// Micro-benchmarks: <c>dotnet run -c Release --project bench/Faultline.Benchmarks -- --filter '*'</c>. The default job
/// is short (1 launch, 2 warm-up and 6 measured iterations), for 2-core shared machines; pass <c>--job</c> to override.
/// </summary>
internal static class Program
{
    private static void Main(string[] args)
    {
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
}
