using System.Diagnostics;
using Faultline.Host;

namespace Faultline.Cli.Paths;

/// <summary>
/// The host kernel's fork reference, <c>Native/fork_bench.c</c> next to the CLI, compiled on first use with
/// <see cref="NativeProgram.Build"/> (the host's C compiler, cached by source). A .NET process cannot call
/// <c>fork()</c> safely, so the kernel row of the fork workload runs this program once per iteration.
/// </summary>
/// <remarks>Thread-safe: the build is attempted once per process.</remarks>
internal static class KernelForkProgram
{
    private static readonly Lazy<(string? Executable, string? Problem)> s_built = new(() => TryBuild(DefaultSource));

    /// <summary>The C source copied to the output folder.</summary>
    public static string DefaultSource => Path.Combine(AppContext.BaseDirectory, "Native", "fork_bench.c");

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
            return (null, $"kernel fork reference not run: {e.Message.Split('\n')[0]}");
        }
    }

    /// <summary>Runs one iteration over <paramref name="mib"/> MiB and returns its figures.</summary>
    /// <exception cref="InvalidOperationException">The program is not built, failed, or printed no figures.</exception>
    public static KernelForkFigures Run(long mib)
    {
        string executable = s_built.Value.Executable ?? throw new InvalidOperationException(Problem);
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(mib.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        // Both pipes are drained concurrently so that a chatty stderr cannot block the program.
        Task<string> errors = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(executable)} {mib} exited {process.ExitCode}: {errors.Result.Trim()}");
        }
        return KernelForkFigures.Parse(output.Trim());
    }
}
