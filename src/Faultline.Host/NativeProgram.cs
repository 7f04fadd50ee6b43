using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;

namespace Faultline.Host;

/// <summary>
/// A small C program the host kernel runs as a reference (real <c>fork()</c>, for instance, which a .NET process cannot
/// do safely): compiled with the host's C compiler on first use, cached by the hash of its source.
/// </summary>
/// <remarks>Thread-safe: concurrent builds of one source compile once (a lock per process) and rename atomically.</remarks>
public static class NativeProgram
{
    private static readonly object s_buildLock = new();

    /// <summary>The C compiler used: <c>$CC</c> when set, else <c>gcc</c>.</summary>
    public static string Compiler => Environment.GetEnvironmentVariable("CC") is { Length: > 0 } cc ? cc : "gcc";

    /// <summary>
    /// The path of the executable built from the C file <paramref name="sourcePath"/> with <c>-O2</c>, compiling it
    /// into a cache folder under the temporary directory unless an executable of the same source is already there.
    /// </summary>
    /// <exception cref="InvalidOperationException">No C compiler was found, or the source did not compile (the
    /// compiler's messages are in the exception's message).</exception>
    public static string Build(string sourcePath)
    {
        string source = File.ReadAllText(sourcePath);
        string hash = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(source)))[..16].ToLowerInvariant();
        string folder = Path.Combine(Path.GetTempPath(), "faultline-native");
        string executable = Path.Combine(folder, $"{Path.GetFileNameWithoutExtension(sourcePath)}-{hash}");
        lock (s_buildLock)
        {
            if (File.Exists(executable))
            {
                return executable;
            }
            Directory.CreateDirectory(folder);
            // Compiled to a private name, then renamed: another process never sees a half-written executable.
            string partial = $"{executable}.{Environment.ProcessId}.tmp";
            var start = new ProcessStartInfo(Compiler)
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            };
            foreach (string arg in new[] { "-O2", "-Wall", "-o", partial, sourcePath })
            {
                start.ArgumentList.Add(arg);
            }
            Process process;
            try
            {
                process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {Compiler}");
            }
            catch (System.ComponentModel.Win32Exception e)
            {
                throw new InvalidOperationException($"no C compiler: '{Compiler}' could not be started ({e.Message}); install gcc or set CC", e);
            }
            using (process)
            {
                string errors = process.StandardError.ReadToEnd() + process.StandardOutput.ReadToEnd();
                process.WaitForExit();
                if (process.ExitCode != 0)
                {
                    throw new InvalidOperationException($"{Compiler} failed on {sourcePath} (exit {process.ExitCode}):\n{errors}");
                }
            }
            File.Move(partial, executable, overwrite: true);
            return executable;
        }
    }
}
