using System.Diagnostics.Metrics;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Diagnostics;

/// <summary>
/// Publishes address spaces' counters as <see cref="System.Diagnostics.Metrics"/> instruments on the meter
/// <c>Faultline</c>: one observable counter per event (kernel names, e.g. <c>faultline.VMA_LOCK_SUCCESS</c>) and gauges
/// for resident pages and VMAs, one measurement per registered address space tagged <c>address_space</c>.
/// Instruments are observed on demand; nothing is counted twice.
/// </summary>
/// <remarks>
/// One meter serves the whole process and reaches each address space through a weak reference: a meter stays in a
/// static list until disposed, so instruments made per address space, holding it strongly, would keep the guest RAM
/// of every address space nobody disposed reachable forever.
/// </remarks>
internal sealed class FaultlineMetrics : IDisposable
{
    /// <summary>The meter name listeners subscribe to.</summary>
    public const string MeterName = "Faultline";

    private static readonly List<FaultlineMetrics> s_registered = [];
    // Created with the first registration (the type's initializer) and never disposed: listeners keep seeing it.
    private static readonly Meter s_meter = CreateMeter();

    private readonly WeakReference<MemoryDescriptor> _mm;
    private readonly KeyValuePair<string, object?> _tag;

    /// <summary>Registers <paramref name="mm"/>, tagged with <paramref name="id"/>.</summary>
    public FaultlineMetrics(MemoryDescriptor mm, long id)
    {
        _mm = new WeakReference<MemoryDescriptor>(mm);
        _tag = new KeyValuePair<string, object?>("address_space", id);
        lock (s_registered)
        {
            s_registered.RemoveAll(registration => !registration._mm.TryGetTarget(out _));
            s_registered.Add(this);
        }
    }

    /// <summary>Stops publishing this address space.</summary>
    public void Dispose()
    {
        lock (s_registered)
        {
            s_registered.Remove(this);
        }
    }

    private static Meter CreateMeter()
    {
        var meter = new Meter(MeterName, "1.0");
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            VmEvent captured = e;
            meter.CreateObservableCounter($"faultline.{EventNames.Of(e)}", () => Observe(mm => mm.SnapshotCounters()[(int)captured]),
                unit: "{event}");
        }
        meter.CreateObservableGauge("faultline.rss_pages", () => Observe(mm => mm.AnonPages), unit: "{page}");
        meter.CreateObservableGauge("faultline.vmas", () => Observe(mm => mm.Tree.Published?.Count ?? 0), unit: "{vma}");
        return meter;
    }

    // Reads every live registration outside the registry's lock (a reading takes the descriptor's own locks).
    private static List<Measurement<T>> Observe<T>(Func<MemoryDescriptor, T> read) where T : struct
    {
        FaultlineMetrics[] registered;
        lock (s_registered)
        {
            registered = [.. s_registered];
        }
        var measurements = new List<Measurement<T>>(registered.Length);
        foreach (FaultlineMetrics registration in registered)
        {
            if (registration._mm.TryGetTarget(out MemoryDescriptor? mm))
            {
                measurements.Add(new Measurement<T>(read(mm), registration._tag));
            }
        }
        return measurements;
    }
}
