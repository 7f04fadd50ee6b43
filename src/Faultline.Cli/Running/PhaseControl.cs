namespace Faultline.Cli.Running;

/// <summary>Tells the workers of one phase (warm-up or measured) when to stop; they finish the iteration in hand.</summary>
internal sealed class PhaseControl
{
    private volatile bool _stop;

    /// <summary>True once the phase's time is up.</summary>
    public bool StopRequested => _stop;

    /// <summary>Ends the phase.</summary>
    public void RequestStop() => _stop = true;
}
