using System.Diagnostics;
using System.Globalization;
using Faultline.Host;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// Runs a fork script on the host kernel with real <c>fork()</c>: the reference program <c>Native/fork_oracle.c</c>,
/// compiled on first use (<see cref="NativeProgram"/>), reserves the script's region at its own addresses in a process
/// of its own, so the test process's address space plays no part.
/// </summary>
internal static class KernelForkRunner
{
    /// <summary>Where fork scripts put their region: the reference program's processes leave it free.</summary>
    public const ulong RegionBase = HostRegion.DefaultBase;

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static readonly Lazy<string> s_program = new(
        () => NativeProgram.Build(Path.Combine(AppContext.BaseDirectory, "Native", "fork_oracle.c")),
        LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The compiled reference program.</summary>
    public static string Program => s_program.Value;

    /// <summary>Runs <paramref name="script"/> and parses every observation.</summary>
    /// <exception cref="InvalidOperationException">The program reported a fatal error, failed or timed out.</exception>
    public static ForkRun Run(ForkScript script)
    {
        var start = new ProcessStartInfo(Program)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add("0x" + script.RegionStart.ToString("x", CultureInfo.InvariantCulture));
        start.ArgumentList.Add("0x" + script.RegionBytes.ToString("x", CultureInfo.InvariantCulture));
        using var process = Process.Start(start) ?? throw new InvalidOperationException("fork_oracle did not start");
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> errors = process.StandardError.ReadToEndAsync();
        process.StandardInput.Write(script.ToText());
        process.StandardInput.Close();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"fork_oracle ran past {Timeout.TotalSeconds} s on {script.Name}");
        }
        string text = output.GetAwaiter().GetResult();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"fork_oracle exited with {process.ExitCode} on {script.Name}:\n{text}{errors.GetAwaiter().GetResult()}");
        }

        var observations = new List<ForkObservation>();
        var facts = new Dictionary<string, string>();
        foreach (string line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            ForkObservation observation = ForkObservation.Parse(line);
            if (observation.Kind == "fact")
            {
                facts[observation.Key] = observation.Value;
            }
            else
            {
                observations.Add(observation);
            }
        }
        return new ForkRun(observations, facts);
    }
}
