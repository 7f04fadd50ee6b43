using System.Diagnostics.Metrics;
using System.Reflection;
using Faultline.Tests.Support;
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

        Dictionary<string, (long Value, Instrument Instrument)> seen = Collect(space.Id);

        Assert.Equal(8, seen["faultline.vmstat.anon_fault"].Value);
        Assert.Equal(space.GetCounters()[VmCounters.VmaLockSuccess], seen["faultline.vmstat.vma_lock_success"].Value);
        Assert.Equal(8, seen["faultline.vmstat.nr_anon_pages"].Value);
        Assert.Equal(1, seen["faultline.vmstat.mmap"].Value);
        Assert.Equal(1, seen["faultline.mm.vmas"].Value);
        Assert.Equal(0, seen["faultline.mm.cpus"].Value);
        Assert.Equal(space.PageTablePages, seen["faultline.mm.page_tables"].Value);
        Assert.Equal(0, seen["faultline.memcg.current"].Value);
        Assert.IsType<ObservableCounter<long>>(seen["faultline.vmstat.pgfault"].Instrument);
        Assert.IsType<ObservableUpDownCounter<long>>(seen["faultline.vmstat.nr_anon_pages"].Instrument);
        Assert.Equal("{fault}", seen["faultline.vmstat.pgfault"].Instrument.Unit);
    }

    [Fact]
    public void OneMeterServesEveryAddressSpaceTaggedByItsId()
    {
        using var first = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        using var second = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        first.Map(0, 4096, Protection.Read, MapFlags.PrivateAnonymous);
        var instruments = new List<Instrument>();
        var perSpace = new Dictionary<long, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == FaultlineMeter.Name)
            {
                instruments.Add(instrument);
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            if (instrument.Name == "faultline.vmstat.mmap")
            {
                foreach (KeyValuePair<string, object?> tag in tags)
                {
                    if (tag.Key == FaultlineMeter.AddressSpaceTag)
                    {
                        perSpace[(long)tag.Value!] = value;
                    }
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();

        Assert.Single(instruments.Select(i => i.Meter).Distinct());
        Assert.Equal(VmCounters.All.Count + 4, instruments.Count);
        Assert.Equal(1, perSpace[first.Id]);
        Assert.Equal(0, perSpace[second.Id]);
    }

    [Fact]
    public void InstrumentNamesFollowOpenTelemetryStyle()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        Dictionary<string, (long Value, Instrument Instrument)> seen = Collect(space.Id);

        Assert.NotEmpty(seen);
        foreach ((string name, (long _, Instrument instrument)) in seen)
        {
            Assert.Matches("^faultline(\\.[a-z][a-z0-9_]*)+$", name);
            Assert.Matches("^\\{[a-z_]+\\}$|^By$", instrument.Unit ?? "");
            Assert.False(string.IsNullOrWhiteSpace(instrument.Description), name);
        }
    }

    [Fact]
    public void GetCountersUsesThePublishedNames()
    {
        using var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });
        IReadOnlyDictionary<string, long> counters = space.GetCounters();

        Assert.Equal(VmCounters.All.Select(c => c.Name).Order(), counters.Keys.Order());
        foreach (string name in new[] { "pgfault", "vma_lock_success", "vma_lock_abort", "vma_lock_retry", "vma_lock_miss",
                     "speculative_pgfault", "spf_vma_notsup", "spf_vma_changed", "spf_vma_access", "spf_pte_lock", "spf_pmd_changed",
                     "nr_anon_pages" })
        {
            Assert.True(counters.ContainsKey(name), name);
        }
    }

    [Fact]
    public void EveryCounterConstantIsListedOnceWithAMeaning()
    {
        string[] constants = typeof(VmCounters).GetFields(BindingFlags.Public | BindingFlags.Static)
            .Where(f => f.IsLiteral).Select(f => (string)f.GetRawConstantValue()!).ToArray();

        Assert.Equal(constants.Order(), VmCounters.All.Select(c => c.Name).Order());
        Assert.Equal(VmCounters.All.Count, VmCounters.All.Select(c => c.Name).Distinct().Count());
        foreach (VmCounterInfo counter in VmCounters.All)
        {
            Assert.Matches("^[a-z][a-z0-9_]*$", counter.Name);
            Assert.True(counter.Description.Length > 20, counter.Name);
            Assert.Equal("faultline.vmstat." + counter.Name, counter.InstrumentName);
        }
        Assert.Equal(VmCounterKind.Level, VmCounters.All.Single(c => c.Name == VmCounters.AnonPages).Kind);
    }

    [Fact]
    public void TheGettingStartedGuideDescribesEveryCounter()
    {
        string[] guide = File.ReadAllLines(Path.Combine(RepositoryRoot.Path, "docs", "GETTING-STARTED.md"));

        foreach (VmCounterInfo counter in VmCounters.All)
        {
            Assert.True(guide.Any(line => line.StartsWith("| `", StringComparison.Ordinal) && line.Contains($"| `{counter.Name}` |")),
                $"docs/GETTING-STARTED.md has no table row for the counter {counter.Name}");
        }
    }

    private static Dictionary<string, (long Value, Instrument Instrument)> Collect(long spaceId)
    {
        var seen = new Dictionary<string, (long, Instrument)>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == FaultlineMeter.Name)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (KeyValuePair<string, object?> tag in tags)
            {
                if (tag.Key == FaultlineMeter.AddressSpaceTag && (long)tag.Value! == spaceId)
                {
                    seen[instrument.Name] = (value, instrument);
                }
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return seen;
    }
}
