using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Faultline.Cli.Replay;

/// <summary>
/// Page faults of a recorded run with <c>perf record -e exceptions:page_fault_user</c>: the address, the thread and,
/// from the x86 error code, the access (bit 1 write, bit 4 instruction fetch). Timestamps are CLOCK_MONOTONIC
/// (<c>-k monotonic</c>).
/// </summary>
internal static partial class PerfFaults
{
    /// <summary>The tracepoint recorded.</summary>
    public const string Event = "exceptions:page_fault_user";

    /// <summary>Null when perf can record the tracepoint here, else one line saying why not.</summary>
    public static string? Unavailable()
    {
        if (HostTool.Find("perf") is not { } perf)
        {
            return "perf is not installed";
        }
        string data = Path.Combine(Path.GetTempPath(), $"faultline-perf-probe-{Environment.ProcessId}.data");
        try
        {
            (int code, string errors) = Run(perf, ["record", "-q", "-k", "monotonic", "-e", Event, "-o", data, "--", "/bin/true"]);
            return code == 0 ? null : $"perf cannot record {Event} here: {errors.Split('\n').FirstOrDefault(l => l.Trim().Length > 0)?.Trim() ?? $"exit {code}"}";
        }
        finally
        {
            File.Delete(data);
        }
    }

    /// <summary>The arguments that put <c>perf record</c> in front of a command, writing to <paramref name="data"/>.</summary>
    public static IReadOnlyList<string> RecordPrefix(string data) =>
        [HostTool.Find("perf") ?? "perf", "record", "-q", "-k", "monotonic", "-e", Event, "-o", data, "--"];

    /// <summary>The faults in <paramref name="data"/>, with times moved by <paramref name="offset"/> seconds.</summary>
    /// <exception cref="InvalidOperationException">perf script failed.</exception>
    public static IReadOnlyList<TraceFault> Read(string data, double offset)
    {
        string perf = HostTool.Find("perf") ?? "perf";
        var start = new ProcessStartInfo(perf) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { "script", "--ns", "-i", data })
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("could not start perf script");
        Task<string> errors = process.StandardError.ReadToEndAsync();
        var faults = new List<TraceFault>();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            if (Parse(line, offset) is { } fault)
            {
                faults.Add(fault);
            }
        }
        process.WaitForExit();
        return process.ExitCode == 0 ? faults : throw new InvalidOperationException($"perf script: {errors.Result.Trim()}");
    }

    /// <summary>One line of <c>perf script</c>, or null when it is not a fault.</summary>
    public static TraceFault? Parse(string line, double offset)
    {
        Match m = Line().Match(line);
        if (!m.Success)
        {
            return null;
        }
        ulong code = ArgumentText.Value(m.Groups["code"].Value);
        AccessKind access = (code & 0x10) != 0 ? AccessKind.Execute : (code & 0x2) != 0 ? AccessKind.Write : AccessKind.Read;
        return new TraceFault(int.Parse(m.Groups["tid"].Value, CultureInfo.InvariantCulture),
            double.Parse(m.Groups["time"].Value, CultureInfo.InvariantCulture) + offset, ArgumentText.Value(m.Groups["address"].Value), access);
    }

    private static (int Code, string Errors) Run(string program, IEnumerable<string> args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        _ = output.Result;
        return (process.ExitCode, errors);
    }

    [GeneratedRegex(@"\s(?<tid>\d+)\s+\[\d+\]\s+(?<time>\d+\.\d+):\s+exceptions:page_fault_user:\s+address=(?<address>0x[0-9a-f]+)\s+ip=0x[0-9a-f]+\s+error_code=(?<code>0x[0-9a-f]+)")]
    private static partial Regex Line();
}
