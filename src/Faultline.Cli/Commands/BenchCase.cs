using Faultline.Cli.Paths;

namespace Faultline.Cli.Commands;

/// <summary>One configuration on one path: the unit that is repeated and shuffled.</summary>
/// <param name="Config">Workload and shape.</param>
/// <param name="Path">The path.</param>
internal sealed record BenchCase(BenchConfig Config, PathKind Path)
{
    /// <summary>"mixed t=1+1 vma-lock".</summary>
    public string Label =>
        $"{Config.Workload.Name} t={Config.Shape.Threads}{(Config.Shape.Churn > 0 ? $"+{Config.Shape.Churn}" : "")} {PathNames.Name(Path)}";
}
