using System.Diagnostics;
using Faultline.Host;

namespace Faultline.Tests.Conformance.Stack;

/// <summary>
/// Runs a stack-growth script on the host kernel: the reference program <c>Native/stack_oracle.c</c>, compiled on
/// first use (<see cref="NativeProgram"/>), touches its own memory with real loads and stores (the only accesses that
/// grow a stack: remote access through <c>get_user_pages</c> does not), in a process of its own.
/// </summary>
internal static class KernelStackRunner
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private static readonly Lazy<string> s_program = new(
        () => NativeProgram.Build(Path.Combine(AppContext.BaseDirectory, "Native", "stack_oracle.c")),
        LazyThreadSafetyMode.ExecutionAndPublication);

    private static readonly Lazy<ulong> s_expansionMinAddress = new(ProbeExpansionMinAddress, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// The lowest address the host grows a stack to: the kernel's <c>mmap_min_addr</c>, which is the larger of the
    /// sysctl <c>vm.mmap_min_addr</c> and <c>CONFIG_LSM_MMAP_MIN_ADDR</c> when security modules are built in, and which
    /// <c>expand_downwards</c> applies with no capability exemption (a MAP_FIXED mapping below it may still succeed
    /// with <c>CAP_SYS_RAWIO</c>). Probed: stores ascending page by page below a grows-down mapping at 256 KiB; the
    /// first that does not fault is the limit.
    /// </summary>
    public static ulong ExpansionMinAddress => s_expansionMinAddress.Value;

    private static ulong ProbeExpansionMinAddress()
    {
        const ulong Page = PageGeometry.PageSize, Stack = 0x40000;
        var steps = new List<string> { $"map {StackScript.Hex(Stack)} {StackScript.Hex(Page)} 3 {StackScript.Hex(0x132)}" };
        for (ulong page = 0; page < Stack; page += Page)
        {
            steps.Add($"write {StackScript.Hex(page)} 1");
        }
        string[] lines = Run(new StackScript("mmap_min_addr probe", 0, Stack, 8 << 20, null, steps));
        if (lines[0] != "0 map 0")
        {
            throw new InvalidOperationException($"mmap_min_addr probe: the grows-down mapping failed: {lines[0]}");
        }
        int first = Array.FindIndex(lines, 1, l => l.EndsWith(" write ok", StringComparison.Ordinal));
        return first < 0 ? Stack : (ulong)(first - 1) * Page;
    }

    /// <summary>Runs <paramref name="script"/> and returns the program's output lines.</summary>
    /// <exception cref="InvalidOperationException">The program reported a fatal error, failed or timed out.</exception>
    public static string[] Run(StackScript script)
    {
        var start = new ProcessStartInfo(s_program.Value)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in script.Arguments())
        {
            start.ArgumentList.Add(argument);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException("stack_oracle did not start");
        Task<string> output = process.StandardOutput.ReadToEndAsync();
        Task<string> errors = process.StandardError.ReadToEndAsync();
        process.StandardInput.Write(script.ToText());
        process.StandardInput.Close();
        if (!process.WaitForExit(Timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"stack_oracle ran past {Timeout.TotalSeconds} s on {script.Name}");
        }
        string text = output.GetAwaiter().GetResult();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException(
                $"stack_oracle exited with {process.ExitCode} on {script.Name}:\n{text}{errors.GetAwaiter().GetResult()}");
        }
        return text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }
}
