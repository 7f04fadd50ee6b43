using System.Diagnostics;
using Faultline.Host;

namespace Faultline.Cli.Paths;

/// <summary>
/// The host kernel's userfaultfd reference, <c>Native/uffd_bench.c</c> next to the CLI, compiled on first use with
/// <see cref="NativeProgram.Build"/> and probed once: where userfaultfd(2) is refused (no root and
/// <c>vm.unprivileged_userfaultfd</c> = 0 without <c>UFFD_USER_MODE_ONLY</c>, a kernel without it, a seccomp filter),
/// the kernel row is skipped with the program's one-line reason.
/// </summary>
/// <remarks>Thread-safe: the build and the probe are attempted once per process.</remarks>
internal static class KernelUserfaultProgram
{
    private const int Unavailable = 2;

    private static readonly Lazy<(string? Executable, string? Problem)> s_built = new(() => TryBuild(DefaultSource));

    /// <summary>The C source copied to the output folder.</summary>
    public static string DefaultSource => Path.Combine(AppContext.BaseDirectory, "Native", "uffd_bench.c");

    /// <summary>Null when the program is built and userfaultfd works here, else one line saying why not.</summary>
    public static string? Problem => s_built.Value.Problem;

    /// <summary>Builds <paramref name="source"/> and probes it on one page: the executable, or one line saying why not.</summary>
    public static (string? Executable, string? Problem) TryBuild(string source)
    {
        string executable;
        try
        {
            executable = NativeProgram.Build(source);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            return (null, $"kernel userfault reference not run: {e.Message.Split('\n')[0]}");
        }
        (int exit, string output, string errors) = Execute(executable, 1);
        return exit == 0 ? (executable, null) : (null, $"kernel userfault reference not run: {(exit == Unavailable ? errors : output + errors).Trim()}");
    }

    /// <summary>Runs the round trip over <paramref name="pages"/> pages and returns its figures.</summary>
    /// <exception cref="InvalidOperationException">The program is not available, failed, or printed no figures.</exception>
    public static KernelUserfaultFigures Run(long pages)
    {
        string executable = s_built.Value.Executable ?? throw new InvalidOperationException(Problem);
        (int exit, string output, string errors) = Execute(executable, pages);
        if (exit != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(executable)} {pages} exited {exit}: {errors.Trim()}");
        }
        return KernelUserfaultFigures.Parse(output.Trim());
    }

    private static (int Exit, string Output, string Errors) Execute(string executable, long pages)
    {
        var start = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(pages.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {executable}");
        // Both pipes are drained concurrently so that a chatty stderr cannot block the program.
        Task<string> errors = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output, errors.Result);
    }
}
