using System.Diagnostics;
using System.Globalization;
using Faultline.Host;

namespace Faultline.Cli.Replay;

/// <summary>
/// <c>Native/exec_layout.c</c>, compiled on first use (<see cref="NativeProgram.Build"/>): runs a command with
/// address-space randomisation off, and reads the layout the kernel builds for a program at execve.
/// </summary>
/// <remarks>Thread-safe: the build is attempted once per process.</remarks>
internal static class ExecLayoutProgram
{
    private static readonly Lazy<(string? Executable, string? Problem)> s_built = new(() =>
    {
        try
        {
            return (NativeProgram.Build(Path.Combine(AppContext.BaseDirectory, "Native", "exec_layout.c")), null);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException)
        {
            return (null, $"cannot build the exec layout helper: {e.Message.Split('\n')[0]}");
        }
    });

    /// <summary>The executable.</summary>
    /// <exception cref="InvalidOperationException">It could not be built (no C compiler).</exception>
    public static string Executable => s_built.Value.Executable ?? throw new InvalidOperationException(s_built.Value.Problem);

    /// <summary>
    /// The layout of <paramref name="program"/> right after its execve with randomisation off: its initial mappings and
    /// heap start, the limits of this process (which the traced program inherited), <c>mmap_base</c> from the stack limit.
    /// </summary>
    /// <exception cref="InvalidOperationException">The program could not be started or stopped at exec.</exception>
    public static ProcessLayout Probe(string program, int execSeq)
    {
        var start = new ProcessStartInfo(Executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add("layout");
        start.ArgumentList.Add(program);
        using Process process = Process.Start(start) ?? throw new InvalidOperationException("could not start exec_layout");
        Task<string> errors = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"layout of {program}: {errors.Result.Trim()}");
        }
        return Parse(output, program, execSeq);
    }

    /// <summary>Reads exec_layout's output (<c>start_brk</c>, <c>stack_limit</c>, <c>memlock_limit</c>, <c>maps</c>, the maps lines).</summary>
    /// <exception cref="FormatException">Output of another form.</exception>
    public static ProcessLayout Parse(string output, string program, int execSeq)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var mappings = new List<InitialMapping>();
        bool maps = false;
        foreach (string line in output.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (maps)
            {
                mappings.Add(MapsLine(line));
            }
            else if (line == "maps")
            {
                maps = true;
            }
            else if (line.Split(' ') is [string key, string value])
            {
                values[key] = value;
            }
        }
        if (!maps || !values.ContainsKey("start_brk") || !values.ContainsKey("stack_limit") || !values.ContainsKey("memlock_limit"))
        {
            throw new FormatException($"exec_layout printed no layout for {program}");
        }
        long stack = long.Parse(values["stack_limit"], CultureInfo.InvariantCulture);
        long memlock = long.Parse(values["memlock_limit"], CultureInfo.InvariantCulture);
        ulong stackLimit = stack < 0 ? ulong.MaxValue : (ulong)stack;
        return new ProcessLayout(execSeq, program, ArgumentText.Value(values["start_brk"]), HostLayout.MmapBase(stackLimit),
            HostLayout.MmapMinAddress, stackLimit, memlock < 0 ? ulong.MaxValue : (ulong)memlock, HostLayout.CapIpcLock,
            HostLayout.MaxMapCount, mappings, HostLayout.ThpAlignedPlacement);
    }

    private static InitialMapping MapsLine(string line)
    {
        string[] fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
        string[] range = fields[0].Split('-');
        return new InitialMapping(ulong.Parse(range[0], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture),
            ulong.Parse(range[1], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture), fields[1],
            fields.Length > 5 ? fields[5].Trim() : "");
    }
}
