namespace Faultline.Tests.Conformance.Fork;

/// <summary>What one side saw running one fork script.</summary>
/// <param name="Observations">Every observation, in the order made (facts probed before the script are not here).</param>
/// <param name="Facts">Side facts: the reference program's probes, or Faultline's summed counters.</param>
internal sealed record ForkRun(IReadOnlyList<ForkObservation> Observations, IReadOnlyDictionary<string, string> Facts)
{
    /// <summary>The one observation of that identity; throws when there is none.</summary>
    public ForkObservation Single(int step, int proc, string kind, string key) =>
        Observations.SingleOrDefault(o => o.Identity == (step, proc, kind, key))
        ?? throw new InvalidOperationException($"no observation '{step} {proc} {kind} {key}'");
}
