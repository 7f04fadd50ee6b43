using System.Globalization;

namespace Faultline.Cli.Replay;

/// <summary>
/// The address spaces of a replay and which recorded thread is in which: an exec starts a space laid out as the kernel
/// laid it out (<see cref="ReplaySpace.Create"/>), a clone without CLONE_VM forks the caller's
/// (<see cref="AddressSpace.Fork"/>), a clone with CLONE_VM (a thread, vfork) shares it.
/// </summary>
/// <remarks>
/// Not thread-safe: one thread at a time applies calls (the replay's turn, or a barrier, orders them); lookups from
/// other threads must be ordered after those calls by the same means. Disposal disposes every space made.
/// </remarks>
internal sealed class ReplayProcesses : IDisposable
{
    private readonly Trace _trace;
    private readonly FaultPath _path;
    private readonly long _physicalBytes;
    private readonly Dictionary<int, ReplaySpace?> _spaces = [];
    private readonly List<ReplaySpace> _all = [];

    /// <summary>The processes of <paramref name="trace"/> on <paramref name="path"/>, each space with an arena of <paramref name="physicalBytes"/>.</summary>
    public ReplayProcesses(Trace trace, FaultPath path, long physicalBytes)
    {
        _trace = trace;
        _path = path;
        _physicalBytes = physicalBytes;
    }

    /// <summary>Successful execs applied.</summary>
    public int Execs { get; private set; }

    /// <summary>Forks applied (clone without CLONE_VM).</summary>
    public int Forks { get; private set; }

    /// <summary>Threads and vforks applied (clone with CLONE_VM).</summary>
    public int Threads { get; private set; }

    /// <summary>True for the calls that shape processes rather than memory: execve, execveat, clone, clone3, fork, vfork.</summary>
    public static bool IsProcessCall(string name) => name is "execve" or "execveat" or "clone" or "clone3" or "fork" or "vfork";

    /// <summary>The space recorded thread <paramref name="tid"/> is in, or null when its exec or creation was not traced.</summary>
    public ReplaySpace? SpaceOf(int tid) => _spaces.GetValueOrDefault(tid);

    /// <summary>Applies a process call (<see cref="IsProcessCall"/>); a failed one changes nothing.</summary>
    public void Apply(TraceCall call)
    {
        if (call.Name is "execve" or "execveat")
        {
            Exec(call);
        }
        else
        {
            Clone(call);
        }
    }

    private void Exec(TraceCall call)
    {
        if (call.Errno is not null || call.Result != "0")
        {
            return;
        }
        Execs++;
        ProcessLayout? layout = _trace.Layouts.FirstOrDefault(l => l.ExecSeq == call.Seq);
        ReplaySpace? space = layout is null ? null : ReplaySpace.Create(layout, _path, _physicalBytes);
        if (space is not null)
        {
            _all.Add(space);
        }
        // The exec replaces the image of the calling thread's process; the threads it killed make no more calls.
        _spaces[call.Tid] = space;
    }

    private void Clone(TraceCall call)
    {
        if (call.Errno is not null || !int.TryParse(call.Result, NumberStyles.None, CultureInfo.InvariantCulture, out int child) || child <= 0)
        {
            return;
        }
        ReplaySpace? parent = _spaces.GetValueOrDefault(call.Tid);
        if ((CloneFlags(call) & 0x100) != 0)
        {
            Threads++;
            _spaces[child] = parent;
            return;
        }
        Forks++;
        ReplaySpace? copy = parent is null ? null : new ReplaySpace(parent.Space.Fork());
        if (copy is not null)
        {
            _all.Add(copy);
        }
        _spaces[child] = copy;
    }

    // clone's flags=..., clone3's {flags=...}; fork none, vfork CLONE_VM|CLONE_VFORK.
    private static ulong CloneFlags(TraceCall call)
    {
        if (call.Name == "vfork")
        {
            return 0x100 | 0x4000;
        }
        foreach (string arg in call.Args)
        {
            string text = arg.TrimStart('{');
            if (text.StartsWith("flags=", StringComparison.Ordinal))
            {
                string value = text[6..];
                int end = value.IndexOfAny([',', '}']);
                return ArgumentText.Value(end < 0 ? value : value[..end]);
            }
        }
        return 0;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (ReplaySpace space in _all)
        {
            space.Dispose();
        }
        _all.Clear();
        _spaces.Clear();
    }
}
