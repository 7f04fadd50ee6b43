using System.Diagnostics;
using System.Globalization;
using Faultline.Host;

namespace Faultline.Cli.Paths;

/// <summary>
/// The host kernel's malloc reference, <c>Native/malloc_bench.c</c> next to the CLI, compiled on first use with
/// <see cref="NativeProgram.Build"/>. A .NET process cannot move its own program break (the runtime's malloc uses it),
/// so the kernel row of the malloc workload runs its touching and mutating threads in this program.
/// </summary>
/// <remarks>Thread-safe: the build is attempted once per process.</remarks>
internal static class KernelMallocProgram
{
    private static readonly Lazy<(string? Executable, string? Problem)> s_built = new(() => TryBuild(DefaultSource));

    /// <summary>The C source copied to the output folder.</summary>
    public static string DefaultSource => Path.Combine(AppContext.BaseDirectory, "Native", "malloc_bench.c");

    /// <summary>Null when the program is built, else one line saying why it cannot be.</summary>
    public static string? Problem => s_built.Value.Problem;

    /// <summary>Builds <paramref name="source"/>: the executable, or one line saying why not (no compiler, a compile error).</summary>
    public static (string? Executable, string? Problem) TryBuild(string source)
    {
        try
        {
            return (NativeProgram.Build(source), null);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            return (null, $"kernel malloc reference not run: {e.Message.Split('\n')[0]}");
        }
    }

    /// <summary>Starts the program with <paramref name="touchers"/> touching and <paramref name="mutators"/> mutating threads.</summary>
    /// <exception cref="InvalidOperationException">The program is not built or could not be started.</exception>
    public static KernelMallocProcess Start(int touchers, int mutators)
    {
        string executable = s_built.Value.Executable ?? throw new InvalidOperationException(Problem);
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(touchers.ToString(CultureInfo.InvariantCulture));
        start.ArgumentList.Add(mutators.ToString(CultureInfo.InvariantCulture));
        return new KernelMallocProcess(Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}"));
    }
}
