namespace Faultline.Cli.Replay;

/// <summary>
/// One system call of a recorded program, as strace showed it (<c>strace -f -y</c>): the thread, the call and its
/// arguments as strace printed them, and the kernel's result.
/// </summary>
/// <param name="Seq">Its place in the trace: completion order, except that a process-creating call (clone, fork,
/// vfork) takes the place of its entry, before anything its child does.</param>
/// <param name="Tid">The calling thread.</param>
/// <param name="Time">Entry time in seconds (strace's <c>-ttt</c>, CLOCK_REALTIME), 0 when the trace has none.</param>
/// <param name="Name">The call, e.g. <c>mmap</c>.</param>
/// <param name="Args">The arguments as printed: <c>NULL</c>, numbers, symbolic flags (<c>PROT_READ|PROT_WRITE</c>),
/// an fd with its file (<c>3&lt;/usr/lib/libc.so.6&gt;</c>).</param>
/// <param name="Result">The return value as printed (<c>0x7ffff7fc0000</c>, <c>0</c>, <c>-1</c>), or <c>?</c> when the
/// thread died before the call returned.</param>
/// <param name="Errno">The error name (<c>ENOMEM</c>) when the call failed, else null.</param>
internal sealed record TraceCall(int Seq, int Tid, double Time, string Name, IReadOnlyList<string> Args, string Result, string? Errno)
{
    /// <summary>The call as strace would print it, for reports.</summary>
    public string Text => $"[{Tid}] {Name}({string.Join(", ", Args)}) = {Result}{(Errno is null ? "" : " " + Errno)}";

    /// <summary>True when the kernel's result is unknown (<c>?</c>: the thread was killed inside the call).</summary>
    public bool ResultUnknown => Result == "?";

    /// <summary>The file named by the first fd argument (<c>-y</c>'s <c>3&lt;/path&gt;</c>), or null.</summary>
    public string? File => Args.Select(ArgumentText.FilePath).FirstOrDefault(p => p is not null);
}
