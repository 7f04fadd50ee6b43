using Faultline.Concurrency;

namespace Faultline.Tests.Support;

/// <summary>
/// Stops the first thread that reaches a named probe point (optionally only a given thread) until the test
/// releases it: the deterministic way to stage a race between a fault and a writer.
/// </summary>
internal sealed class ProbeGate : IDisposable
{
    private readonly AddressSpace _space;
    private readonly ProbePoint _point;
    private readonly Func<bool> _filter;
    private readonly ManualResetEventSlim _arrived = new(false);
    private readonly ManualResetEventSlim _release = new(false);
    private int _armed = 1;
    private readonly Action<ProbePoint>? _previous;

    /// <summary>Arms a gate at <paramref name="point"/> for threads that pass <paramref name="filter"/>.</summary>
    public ProbeGate(AddressSpace space, ProbePoint point, Func<bool>? filter = null)
    {
        if (!ProbeSet.Enabled)
        {
            throw new InvalidOperationException("probes are disabled: the test project must set Faultline.EnableProbes");
        }
        _space = space;
        _point = point;
        _filter = filter ?? (() => true);
        _previous = space.Descriptor.Probes.Handler;
        space.Descriptor.Probes.Handler = OnProbe;
    }

    /// <summary>Times the point was hit while armed or after (all threads passing the filter).</summary>
    public int Hits;

    private void OnProbe(ProbePoint point)
    {
        _previous?.Invoke(point);
        if (point != _point || !_filter())
        {
            return;
        }
        Interlocked.Increment(ref Hits);
        if (Interlocked.Exchange(ref _armed, 0) == 1)
        {
            _arrived.Set();
            if (!_release.Wait(TimeSpan.FromSeconds(30)))
            {
                throw new TimeoutException($"probe {point} was never released");
            }
        }
    }

    /// <summary>Waits until a thread is stopped at the point.</summary>
    public void WaitArrived()
    {
        if (!_arrived.Wait(TimeSpan.FromSeconds(30)))
        {
            throw new TimeoutException($"no thread reached {_point}");
        }
    }

    /// <summary>True once a thread stopped at the point.</summary>
    public bool HasArrived => _arrived.IsSet;

    /// <summary>Lets the stopped thread continue.</summary>
    public void Release() => _release.Set();

    /// <inheritdoc />
    public void Dispose()
    {
        _release.Set();
        _space.Descriptor.Probes.Handler = _previous;
    }
}
