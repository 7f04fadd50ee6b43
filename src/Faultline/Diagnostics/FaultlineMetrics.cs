using System.Diagnostics.Metrics;
using Faultline.Areas;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Diagnostics;

/// <summary>
/// Publishes an address space's counters as <see cref="System.Diagnostics.Metrics"/> instruments on the meter
/// <c>Faultline</c>: one observable counter per event (kernel names, e.g. <c>faultline.VMA_LOCK_SUCCESS</c>) and gauges
/// for resident pages and VMAs. Instruments are observed on demand; nothing is counted twice.
/// </summary>
internal sealed class FaultlineMetrics : IDisposable
{
    /// <summary>The meter name listeners subscribe to.</summary>
    public const string MeterName = "Faultline";

    private readonly Meter _meter;

    /// <summary>Creates the instruments for <paramref name="mm"/>, tagged with <paramref name="id"/>.</summary>
    public FaultlineMetrics(MemoryDescriptor mm, long id)
    {
        _meter = new Meter(MeterName, "1.0");
        var tag = new KeyValuePair<string, object?>("address_space", id);
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            VmEvent captured = e;
            _meter.CreateObservableCounter($"faultline.{EventNames.Of(e)}",
                () => new Measurement<long>(mm.SnapshotCounters()[(int)captured], tag), unit: "{event}");
        }
        _meter.CreateObservableGauge("faultline.rss_pages", () => new Measurement<long>(mm.AnonPages, tag), unit: "{page}");
        _meter.CreateObservableGauge("faultline.vmas", () => new Measurement<int>(mm.Tree.Published?.Count ?? 0, tag), unit: "{vma}");
    }

    /// <inheritdoc />
    public void Dispose() => _meter.Dispose();
}
