using System.Diagnostics;

namespace Faultline.Cli.Paths;

/// <summary>
/// A running <c>Native/malloc_bench.c</c>: its threads work from the start; <see cref="Snapshot"/> reads its
/// cumulative counters, <see cref="Stop"/> ends it.
/// </summary>
/// <remarks>Not thread-safe: one thread drives it. Dispose kills the program if it was not stopped.</remarks>
internal sealed class KernelMallocProcess : IDisposable
{
    private readonly Process _process;
    // Drained from the start so that a chatty stderr cannot block the program.
    private readonly Task<string> _errors;

    /// <summary>Takes over a started program with redirected stdin, stdout and stderr.</summary>
    public KernelMallocProcess(Process process)
    {
        _process = process;
        _errors = process.StandardError.ReadToEndAsync();
    }

    /// <summary>The counters now.</summary>
    /// <exception cref="InvalidOperationException">The program exited (a failed system call) or printed no figures.</exception>
    public KernelMallocFigures Snapshot()
    {
        _process.StandardInput.Write('s');
        _process.StandardInput.Flush();
        string? line = _process.StandardOutput.ReadLine();
        return line is null ? throw Failed() : KernelMallocFigures.Parse(line);
    }

    /// <summary>Stops the threads and waits for the program; returns the first wrong value it described, or null.</summary>
    /// <exception cref="InvalidOperationException">The program failed.</exception>
    public string? Stop()
    {
        _process.StandardInput.Write('q');
        _process.StandardInput.Close();
        string? line = _process.StandardOutput.ReadLine();
        _process.WaitForExit();
        if (_process.ExitCode != 0 || line is null || !line.StartsWith("done ", StringComparison.Ordinal))
        {
            throw Failed();
        }
        string errors = _errors.Result.Trim();
        return errors.Length == 0 ? null : errors.Split('\n')[0];
    }

    private InvalidOperationException Failed()
    {
        _process.WaitForExit();
        return new InvalidOperationException($"malloc_bench exited {_process.ExitCode}: {_errors.Result.Trim()}");
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
