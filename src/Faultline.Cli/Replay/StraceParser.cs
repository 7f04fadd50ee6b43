using System.Globalization;
using System.Text.RegularExpressions;

namespace Faultline.Cli.Replay;

/// <summary>
/// Reads the output of <c>strace -f -y [-ttt]</c> into <see cref="TraceCall"/>s: a call split across threads
/// (<c>&lt;unfinished ...&gt;</c>, then <c>&lt;... mmap resumed&gt;</c>) is joined, signal lines (<c>--- SIGCHLD ...</c>)
/// are passed over, and a call whose thread exits before it returns (<c>+++ exited with 0 +++</c>, <c>+++ killed by
/// SIGKILL +++</c>) gets the result <c>?</c>. Calls are numbered in completion order, but a process-creating call keeps
/// the place of its entry, so that it precedes everything its child does.
/// </summary>
/// <remarks>Not thread-safe: one parser per trace.</remarks>
internal sealed partial class StraceParser
{
    private static readonly HashSet<string> Creating = ["clone", "clone3", "fork", "vfork"];

    private readonly List<TraceCall?> _slots = [];
    private readonly Dictionary<int, Pending> _pending = [];

    /// <summary>Parses a whole strace output.</summary>
    /// <exception cref="FormatException">A line that looks like a call but cannot be read.</exception>
    public static IReadOnlyList<TraceCall> Parse(IEnumerable<string> lines)
    {
        var parser = new StraceParser();
        foreach (string line in lines)
        {
            parser.Add(line);
        }
        return parser.Finish();
    }

    /// <summary>Adds one line.</summary>
    public void Add(string line)
    {
        Match m = Prefix().Match(line);
        int tid = m.Groups["pid"].Success ? int.Parse(m.Groups["pid"].Value, CultureInfo.InvariantCulture)
            : m.Groups["pid2"].Success ? int.Parse(m.Groups["pid2"].Value, CultureInfo.InvariantCulture) : 0;
        double time = m.Groups["time"].Success ? double.Parse(m.Groups["time"].Value, CultureInfo.InvariantCulture) : 0;
        string body = line[m.Length..].TrimEnd();
        if (body.StartsWith("---", StringComparison.Ordinal) || body.Length == 0)
        {
            return;
        }
        if (body.StartsWith("+++", StringComparison.Ordinal))
        {
            // The thread is gone: a call it had not returned from never will.
            if (_pending.Remove(tid, out Pending? left))
            {
                Complete(left, tid, left.Text + ") = ?");
            }
            return;
        }
        Match resumed = Resumed().Match(body);
        if (resumed.Success)
        {
            if (_pending.Remove(tid, out Pending? start))
            {
                string rest = body[resumed.Length..];
                if (rest.EndsWith("<unfinished ...>", StringComparison.Ordinal))
                {
                    _pending[tid] = start with { Text = start.Text + rest[..^"<unfinished ...>".Length].TrimEnd() };
                    return;
                }
                Complete(start, tid, start.Text + rest);
            }
            return;
        }
        if (body.EndsWith("<unfinished ...>", StringComparison.Ordinal))
        {
            string text = body[..^"<unfinished ...>".Length].TrimEnd();
            string name = text[..Math.Max(0, text.IndexOf('('))];
            int slot = -1;
            if (Creating.Contains(name))
            {
                slot = _slots.Count;
                _slots.Add(null);
            }
            _pending[tid] = new Pending(text, time, slot);
            return;
        }
        if (Call().IsMatch(body))
        {
            Complete(new Pending("", time, -1), tid, body);
        }
    }

    /// <summary>The calls, after closing those still unfinished with <c>?</c>.</summary>
    public IReadOnlyList<TraceCall> Finish()
    {
        foreach ((int tid, Pending left) in _pending.OrderBy(p => p.Value.Time))
        {
            Complete(left, tid, left.Text + ") = ?");
        }
        _pending.Clear();
        var calls = new List<TraceCall>();
        foreach (TraceCall? call in _slots)
        {
            if (call is not null)
            {
                calls.Add(call with { Seq = calls.Count });
            }
        }
        return calls;
    }

    /// <summary>Reads one complete call: <c>NAME(ARGS) = RESULT [ERRNO (message)]</c>.</summary>
    /// <exception cref="FormatException">The text is not a call.</exception>
    public static TraceCall ParseCall(string text, int tid, double time)
    {
        int open = text.IndexOf('(');
        int close = open < 0 ? -1 : MatchingParen(text, open);
        if (open <= 0 || close < 0)
        {
            throw new FormatException($"not a system call: {text}");
        }
        string name = text[..open];
        Match result = Result().Match(text, close + 1);
        if (!result.Success)
        {
            throw new FormatException($"no result in: {text}");
        }
        IReadOnlyList<string> args = ArgumentText.Split(text[(open + 1)..close]);
        string? errno = result.Groups["errno"].Success ? result.Groups["errno"].Value : null;
        return new TraceCall(0, tid, time, name, args, result.Groups["result"].Value, errno);
    }

    private void Complete(Pending start, int tid, string text)
    {
        TraceCall call = ParseCall(text, tid, start.Time);
        if (start.Slot >= 0)
        {
            _slots[start.Slot] = call;
        }
        else
        {
            _slots.Add(call);
        }
    }

    // The ")" that closes the "(" at open, outside quoted strings.
    private static int MatchingParen(string text, int open)
    {
        int depth = 0;
        bool quoted = false;
        for (int i = open; i < text.Length; i++)
        {
            char c = text[i];
            if (quoted)
            {
                if (c == '\\')
                {
                    i++;
                }
                else if (c == '"')
                {
                    quoted = false;
                }
                continue;
            }
            if (c == '"')
            {
                quoted = true;
            }
            else if (c == '(')
            {
                depth++;
            }
            else if (c == ')' && --depth == 0)
            {
                return i;
            }
        }
        return -1;
    }

    private sealed record Pending(string Text, double Time, int Slot);

    [GeneratedRegex(@"^(?:\[pid\s+(?<pid>\d+)\]\s+|(?<pid2>\d+)\s+)?(?:(?<time>\d+\.\d+)\s+)?")]
    private static partial Regex Prefix();

    [GeneratedRegex(@"^<\.\.\. [a-z0-9_]+ resumed>")]
    private static partial Regex Resumed();

    [GeneratedRegex(@"^[a-z_][a-z0-9_]*\(")]
    private static partial Regex Call();

    [GeneratedRegex(@"\G\s*=\s*(?<result>\?|0x[0-9a-f]+|-?\d+)\S*(?:\s+(?<errno>E[A-Z0-9]+))?")]
    private static partial Regex Result();
}
