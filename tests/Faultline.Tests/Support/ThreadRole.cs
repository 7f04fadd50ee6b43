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
