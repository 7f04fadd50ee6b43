using System.Diagnostics.Metrics;
using Xunit;

namespace Faultline.Tests.Unit;

public class DiagnosticsTests
{
    [Fact]
    public void CountersArePublishedAsMetricsInstruments()
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = FaultPath.VmaLock, PhysicalMemoryBytes = 16 << 20 });
        ulong a = space.Map(0, 8 * 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        using (Cpu cpu = space.AttachCpu())
        {
            for (ulong p = a; p < a + 8 * 4096; p += 4096)
            {
                cpu.Store(p, 1);
            }
        }
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == "Faultline")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == "address_space" && (long)tag.Value! == space.Id)
                {
                    seen[instrument.Name] = value;
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Equal(8, seen["faultline.anon_fault"]);
        Assert.Equal(space.GetCounters()["VMA_LOCK_SUCCESS"], seen["faultline.VMA_LOCK_SUCCESS"]);
        Assert.Equal(8, seen["faultline.rss_pages"]);
        Assert.Equal(1, seen["faultline.mmap"]);
    }

    [Fact]
    public void CountersNameTheKernelEvents()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        IReadOnlyDictionary<string, long> counters = space.GetCounters();
        foreach (string name in new[] { "pgfault", "VMA_LOCK_SUCCESS", "VMA_LOCK_ABORT", "VMA_LOCK_RETRY", "VMA_LOCK_MISS",
                     "spf_vma_notsup", "spf_vma_changed", "spf_vma_access", "spf_pte_lock", "spf_pmd_changed", "nr_anon_pages" })
        {
            Assert.True(counters.ContainsKey(name), name);
        }
    }
}
