namespace Faultline.Concurrency;

/// <summary>
/// Internal probe points of one address space. Off in production at no cost: <see cref="Enabled"/> is a static
/// readonly flag the JIT folds to a constant, read from the AppContext switch <c>Faultline.EnableProbes</c>
/// (the test project sets it). When enabled, <see cref="Handler"/> is called at each named step with the
/// thread that reached it; a test's handler may block that thread while it runs a writer.
/// </summary>
internal sealed class ProbeSet
{
    /// <summary>True when the process enabled probes.</summary>
    public static readonly bool Enabled = AppContext.TryGetSwitch("Faultline.EnableProbes", out bool on) && on;

    /// <summary>The test's handler, or null.</summary>
    public volatile Action<ProbePoint>? Handler;

    /// <summary>Reports reaching <paramref name="point"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Hit(ProbePoint point)
    {
        if (Enabled)
        {
            Handler?.Invoke(point);
        }
    }
}
