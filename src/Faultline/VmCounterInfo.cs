namespace Faultline;

/// <summary>One counter of <see cref="AddressSpace.GetCounters"/> and the Metrics instrument that publishes it.</summary>
/// <param name="Name">
/// The key in <see cref="AddressSpace.GetCounters"/>: the <c>/proc/vmstat</c> spelling where the kernel has the counter
/// (<c>pgfault</c>, <c>vma_lock_success</c>), the SPF series' name for its events (<c>spf_vma_changed</c>), else a
/// lower-case name of the same style.
/// </param>
/// <param name="Unit">The unit, in the UCUM annotation form OpenTelemetry uses (<c>{fault}</c>, <c>{page}</c>).</param>
/// <param name="Kind">A count of events or a level.</param>
/// <param name="Description">What the kernel counts under this name, and what Faultline counts.</param>
/// <remarks>Immutable; safe to share between threads.</remarks>
public sealed record VmCounterInfo(string Name, string Unit, VmCounterKind Kind, string Description)
{
    /// <summary>The name of the Metrics instrument on the <see cref="FaultlineMeter.Name"/> meter: <c>faultline.vmstat.</c> and <see cref="Name"/>.</summary>
    public string InstrumentName => FaultlineMeter.VmStatPrefix + Name;
}
