using System.Diagnostics;

namespace Faultline.Cli.Replay;

/// <summary>
/// <c>faultline record</c>: runs a command with address-space randomisation off under
/// <c>strace -f -y -ttt -e trace=%memory,clone,clone3,fork,vfork,execve,execveat</c> (threads and forks followed), optionally
/// under <c>perf record -e exceptions:page_fault_user</c> too, then reads the layout the kernel built at each exec
/// (<see cref="ExecLayoutProgram"/>) and returns the <see cref="Trace"/>.
/// </summary>
internal static class TraceRecorder
{
    /// <summary>The strace filter: the memory calls and the calls that make threads, processes and images.</summary>
    public const string Filter = "trace=%memory,clone,clone3,fork,vfork,execve,execveat";

    /// <summary>Records <paramref name="command"/>; its output and input are this process's.</summary>
    /// <param name="command">The program and its arguments.</param>
    /// <param name="faults">Also record page faults (when the host allows; <see cref="Trace.FaultsNote"/> says why not).</param>
    /// <param name="quiet">Send the program's output to nothing (tests), not to this process's console.</param>
    /// <exception cref="InvalidOperationException">strace or a C compiler is missing, the layout cannot be read, or
    /// strace failed (its message).</exception>
    public static Trace Record(IReadOnlyList<string> command, bool faults, bool quiet = false)
    {
        string strace = HostTool.Find("strace") ?? throw new InvalidOperationException("strace is not installed (apt-get install strace)");
        if (HostLayout.LegacyLayout)
        {
            throw new InvalidOperationException("vm.legacy_va_layout is set: mmap places bottom-up, which replay does not model");
        }
        string launcher = ExecLayoutProgram.Executable;
        string folder = Directory.CreateTempSubdirectory("faultline-record-").FullName;
        try
        {
            string straceOut = Path.Combine(folder, "strace.txt");
            string perfData = Path.Combine(folder, "perf.data");
            string? faultsNote = faults ? PerfFaults.Unavailable() : null;
            bool withPerf = faults && faultsNote is null;
            var args = new List<string> { "run" };
            if (withPerf)
            {
                args.AddRange(PerfFaults.RecordPrefix(perfData));
            }
            args.AddRange([strace, "-f", "-y", "-q", "-ttt", "-e", Filter, "-o", straceOut, "--"]);
            args.AddRange(command);
            // CLOCK_REALTIME (strace's -ttt) minus CLOCK_MONOTONIC (perf's -k monotonic, Stopwatch's clock on Linux).
            double offset = DateTime.UtcNow.Subtract(DateTime.UnixEpoch).TotalSeconds - (double)Stopwatch.GetTimestamp() / Stopwatch.Frequency;
            int exitCode = Run(launcher, args, quiet, out string errors);
            if (!File.Exists(straceOut) || new FileInfo(straceOut).Length == 0)
            {
                throw new InvalidOperationException($"strace recorded nothing (exit {exitCode}): {errors.Trim()}");
            }
            IReadOnlyList<TraceCall> calls = StraceParser.Parse(File.ReadLines(straceOut));
            var layouts = new List<ProcessLayout>();
            var byProgram = new Dictionary<string, ProcessLayout>(StringComparer.Ordinal);
            foreach (TraceCall exec in calls.Where(c => c.Name == "execve" && c.Errno is null && c.Result == "0"))
            {
                string program = ArgumentText.Unquote(exec.Args[0]);
                if (!byProgram.TryGetValue(program, out ProcessLayout? layout))
                {
                    layout = ExecLayoutProgram.Probe(program, exec.Seq);
                    byProgram[program] = layout;
                }
                layouts.Add(layout with { ExecSeq = exec.Seq });
            }
            IReadOnlyList<TraceFault> recorded = [];
            if (withPerf)
            {
                recorded = TracedFaults(PerfFaults.Read(perfData, offset), calls);
            }
            var fileSystems = new SortedDictionary<string, string>(StringComparer.Ordinal);
            foreach (string file in calls.Select(c => c.File).OfType<string>().Distinct())
            {
                fileSystems[file] = HostLayout.FileSystemOf(file);
            }
            return new Trace(Trace.CurrentVersion, command, ReadKernel(), exitCode, faultsNote, withPerf, layouts, calls, recorded, fileSystems);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    // The faults of the traced threads after their first exec (before it, a thread still runs strace's own image).
    private static IReadOnlyList<TraceFault> TracedFaults(IReadOnlyList<TraceFault> faults, IReadOnlyList<TraceCall> calls)
    {
        var firstExec = new Dictionary<int, double>();
        var threads = new HashSet<int>();
        foreach (TraceCall call in calls)
        {
            threads.Add(call.Tid);
            if (call.Name is "clone" or "clone3" or "fork" or "vfork" && int.TryParse(call.Result, out int child) && child > 0)
            {
                threads.Add(child);
            }
            if (call.Name == "execve" && call.Errno is null && !firstExec.ContainsKey(call.Tid))
            {
                firstExec[call.Tid] = call.Time;
            }
        }
        double start = firstExec.Count == 0 ? 0 : firstExec.Values.Min();
        return faults.Where(f => threads.Contains(f.Tid) && f.Time >= start
                && (!firstExec.TryGetValue(f.Tid, out double exec) || f.Time >= exec))
            .OrderBy(f => f.Time).ToList();
    }

    private static int Run(string program, IReadOnlyList<string> args, bool quiet, out string errors)
    {
        var start = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardError = true,
            RedirectStandardOutput = quiet,
            RedirectStandardInput = quiet,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        if (quiet)
        {
            process.StandardInput.Close();
        }
        Task<string> output = quiet ? process.StandardOutput.ReadToEndAsync() : Task.FromResult("");
        // The program's stderr passes through (strace's own messages among it), and is kept for an error message.
        var kept = new System.Text.StringBuilder();
        while (process.StandardError.ReadLine() is { } line)
        {
            if (!quiet)
            {
                Console.Error.WriteLine(line);
            }
            if (kept.Length < 4096)
            {
                kept.AppendLine(line);
            }
        }
        process.WaitForExit();
        _ = output.Result;
        errors = kept.ToString();
        return process.ExitCode;
    }

    private static string ReadKernel()
    {
        try
        {
            return File.ReadAllText("/proc/sys/kernel/osrelease").Trim();
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
