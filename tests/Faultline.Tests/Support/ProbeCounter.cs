using Faultline.Concurrency;

namespace Faultline.Tests.Support;

/// <summary>
/// Counts probe hits per point without stopping anyone (chains to the handler installed before it; dispose in reverse
/// order of creation, as with <see cref="ProbeGate"/>).
/// </summary>
internal sealed class ProbeCounter : IDisposable
{
    private readonly ProbeSet _probes;
    private readonly Action<ProbePoint>? _previous;
    private readonly int[] _hits = new int[Enum.GetValues<ProbePoint>().Length];

    /// <summary>Starts counting on <paramref name="probes"/>.</summary>
    public ProbeCounter(ProbeSet probes)
    {
        if (!ProbeSet.Enabled)
        {
            throw new InvalidOperationException("probes are disabled: the test project must set Faultline.EnableProbes");
        }
        _probes = probes;
        _previous = probes.Handler;
        probes.Handler = point =>
        {
            Interlocked.Increment(ref _hits[(int)point]);
            _previous?.Invoke(point);
        };
    }

    /// <summary>Hits of <paramref name="point"/> so far.</summary>
    public int this[ProbePoint point] => Volatile.Read(ref _hits[(int)point]);

    /// <inheritdoc />
    public void Dispose() => _probes.Handler = _previous;
}
