namespace Faultline.Tests.Support;

/// <summary>
/// Names the role of the current thread (reader, writer...) so probe filters can tell threads apart. The role is set
/// on the thread itself before its body runs, so a filter never races with the creation of a <see cref="ThreadRunner{T}"/>.
/// </summary>
internal static class ThreadRole
{
    [ThreadStatic]
    private static string? t_role;

    /// <summary>The current thread's role, or null.</summary>
    public static string? Current => t_role;

    /// <summary>A probe filter that passes only threads of <paramref name="role"/>.</summary>
    public static Func<bool> Is(string role) => () => t_role == role;

    /// <summary>Starts <paramref name="body"/> on a new thread playing <paramref name="role"/>.</summary>
    public static ThreadRunner<T> Run<T>(string role, Func<T> body) => new(() =>
    {
        t_role = role;
        return body();
    });

    /// <summary>Polls <paramref name="condition"/> until it holds; fails the test after <paramref name="timeoutMs"/>.</summary>
    public static void WaitUntil(Func<bool> condition, string what, int timeoutMs = 10_000)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.ElapsedMilliseconds > timeoutMs)
            {
                throw new TimeoutException($"timed out waiting until {what}");
            }
            Thread.Sleep(1);
        }
    }
}

/// <summary>
/// The threads a race test started: disposing joins them (ignoring their failures), so a failing test that releases
/// its gates never lets a stopped thread run on into an address space that is being disposed. Declare it after the
/// address space and Cpus and before the probe gates: it is then disposed after the gates release and before the rest.
/// </summary>
internal sealed class ThreadScope : IDisposable
{
    private readonly List<Action> _joins = [];

    /// <summary>Starts <paramref name="body"/> on a new thread playing <paramref name="role"/>.</summary>
    public ThreadRunner<T> Run<T>(string role, Func<T> body)
    {
        ThreadRunner<T> runner = ThreadRole.Run(role, body);
        _joins.Add(() => runner.Join());
        return runner;
    }

    /// <summary>Starts a plain thread (for tests that need the <see cref="Thread"/> itself).</summary>
    public Thread Start(Action body)
    {
        var thread = new Thread(() => body()) { IsBackground = true };
        thread.Start();
        _joins.Add(() => thread.Join(30_000));
        return thread;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        foreach (Action join in _joins)
        {
            try
            {
                join();
            }
            catch (Exception)
            {
                // The test already failed or will fail on its own assertion; only the join matters here.
            }
        }
    }
}
