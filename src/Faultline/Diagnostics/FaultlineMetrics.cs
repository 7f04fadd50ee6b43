using System.Diagnostics.Metrics;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Diagnostics;

/// <summary>
/// Publishes address spaces' counters as <see cref="System.Diagnostics.Metrics"/> instruments on the one meter
/// <see cref="FaultlineMeter.Name"/>: one observable instrument per counter of <see cref="VmCounters.All"/>, three
/// for the address space's shape (VMAs, Cpus, page-table pages) and one for its memory group's usage, all of <see cref="long"/>, one measurement per
/// registered address space tagged <see cref="FaultlineMeter.AddressSpaceTag"/>. Instruments are observed on demand;
/// nothing is counted twice.
/// </summary>
/// <remarks>
/// One meter serves the whole process and reaches each address space through a weak reference: a meter stays in a
/// static list until disposed, so instruments made per address space, holding it strongly, would keep the guest RAM
/// of every address space nobody disposed reachable forever.
/// </remarks>
internal sealed class FaultlineMetrics : IDisposable
{
    private static readonly List<FaultlineMetrics> s_registered = [];
    // Created with the first registration (the type's initializer) and never disposed: listeners keep seeing it.
    private static readonly Meter s_meter = CreateMeter();

    private readonly WeakReference<MemoryDescriptor> _mm;
    private readonly KeyValuePair<string, object?> _tag;

    /// <summary>Registers <paramref name="mm"/>, tagged with <paramref name="id"/>.</summary>
    public FaultlineMetrics(MemoryDescriptor mm, long id)
    {
        _mm = new WeakReference<MemoryDescriptor>(mm);
        _tag = new KeyValuePair<string, object?>(FaultlineMeter.AddressSpaceTag, id);
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
        var meter = new Meter(FaultlineMeter.Name, typeof(FaultlineMetrics).Assembly.GetName().Version?.ToString());
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            VmEvent captured = e;
            VmCounterInfo counter = EventNames.Info(e);
            Func<IEnumerable<Measurement<long>>> observe = () => Observe(mm => mm.SnapshotCounters()[(int)captured]);
            _ = counter.Kind == VmCounterKind.Counter
                ? meter.CreateObservableCounter(counter.InstrumentName, observe, counter.Unit, counter.Description)
                : (ObservableInstrument<long>)meter.CreateObservableUpDownCounter(counter.InstrumentName, observe, counter.Unit, counter.Description);
        }
        meter.CreateObservableUpDownCounter("faultline.mm.vmas", () => Observe(mm => (long)mm.Tree.PublishedCount), "{vma}",
            "VMAs (map_count)");
        meter.CreateObservableUpDownCounter("faultline.mm.cpus", () => Observe(mm => (long)mm.Users), "{cpu}",
            "Cpus attached (mm_users)");
        meter.CreateObservableUpDownCounter("faultline.mm.page_tables", () => Observe(mm => (long)mm.PageTable.TablePages), "{page}",
            "Page-table pages in use");
        meter.CreateObservableUpDownCounter("faultline.memcg.current", () => Observe(mm => mm.Group?.Usage ?? 0), "{page}",
            "Pages charged to the address space's memory group (memory.current; 0 without a group)");
        return meter;
    }

    // Reads every live registration outside the registry's lock (a reading takes the descriptor's own locks). A
    // descriptor being torn down is skipped: its state is no longer the address space's.
    private static List<Measurement<long>> Observe(Func<MemoryDescriptor, long> read)
    {
        FaultlineMetrics[] registered;
        lock (s_registered)
        {
            registered = [.. s_registered];
        }
        var measurements = new List<Measurement<long>>(registered.Length);
        foreach (FaultlineMetrics registration in registered)
        {
            if (registration._mm.TryGetTarget(out MemoryDescriptor? mm) && !mm.IsExiting)
            {
                measurements.Add(new Measurement<long>(read(mm), registration._tag));
            }
        }
        return measurements;
    }
}
