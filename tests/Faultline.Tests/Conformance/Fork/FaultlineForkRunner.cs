using System.Globalization;
using Faultline.Tests.Support;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// Runs a fork script on Faultline: process 0 is a new <see cref="AddressSpace"/>, a fork is
/// <see cref="AddressSpace.Fork"/>, every process accesses memory through a <see cref="Cpu"/> of its own (plus an idle
/// second one on the speculative path, which runs only with more than one user), an exit disposes the process's space.
/// Observations have the reference program's format, so <see cref="ForkComparer"/> compares them field by field.
/// </summary>
internal static class FaultlineForkRunner
{
    /// <summary>Fact: faults the chosen path handled itself, summed over every process.</summary>
    public const string HandledOnPath = "handled_on_path";

    /// <summary>Fact: <c>cow_fault</c> summed over every process.</summary>
    public const string CowFault = "cow_fault";

    /// <summary>Fact: <c>cow_reuse</c> summed over every process.</summary>
    public const string CowReuse = "cow_reuse";

    /// <summary>The smaps fields the reference program reports, in its order.</summary>
    private static readonly string[] SmapsFields =
        ["Rss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Pss"];

    /// <summary>The VmFlags mnemonics fork acts on (VM_DONTCOPY, VM_WIPEONFORK), in the reference program's order.</summary>
    private static readonly string[] ForkFlagNames = ["dc", "wf"];

    /// <param name="script">The script.</param>
    /// <param name="path">Faultline's fault path, the same in every process.</param>
    /// <param name="mapZeroPageOnRead">What the host does on a read fault (<see cref="Host.HostFacts"/>).</param>
    public static ForkRun Run(ForkScript script, FaultPath path, bool mapZeroPageOnRead)
    {
        var processes = new SortedDictionary<int, ForkedProcess>();
        var observations = new List<ForkObservation>();
        var counters = new Dictionary<string, long> { [HandledOnPath] = 0, [CowFault] = 0, [CowReuse] = 0 };
        try
        {
            var space = new AddressSpace(new FaultlineOptions
            {
                FaultPath = path,
                PhysicalMemoryBytes = 32 << 20,
                MapZeroPageOnRead = mapZeroPageOnRead,
                // A read fault on shared memory maps the host's fault-around window of cached pages.
                FaultAroundBytes = Host.HostFacts.Current.FaultAroundPages * PageGeometry.PageSize,
            });
            processes[0] = new ForkedProcess(space, path);
            Errno reserved = space.TryMap(script.RegionStart, script.RegionBytes, Protection.None,
                MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.NoReserve, out _);
            if (reserved != Errno.None)
            {
                throw new InvalidOperationException($"reserving the region failed: {reserved}");
            }
            for (int step = 0; step < script.Steps.Count; step++)
            {
                Run(script, step, processes, observations, counters, path);
            }
        }
        finally
        {
            foreach (ForkedProcess process in processes.Values)
            {
                Add(counters, process, path);
                process.Dispose();
            }
        }
        return new ForkRun(observations, counters.ToDictionary(c => c.Key, c => c.Value.ToString(CultureInfo.InvariantCulture)));
    }

    private static void Run(ForkScript script, int step, SortedDictionary<int, ForkedProcess> processes,
        List<ForkObservation> observations, Dictionary<string, long> counters, FaultPath path)
    {
        ForkStep s = script.Steps[step];
        void Observe(int proc, string kind, string key, string value) =>
            observations.Add(new ForkObservation(step, proc, kind, key, value));
        string range = $"{s.Address:x}+{s.Length:x}";
        switch (s.Kind)
        {
            case ForkStepKind.Report:
                foreach ((int proc, ForkedProcess process) in processes)
                {
                    Report(script, process, s.Samples ?? [], (kind, key, value) => Observe(proc, kind, key, value));
                }
                return;
            case ForkStepKind.Map:
                Observe(s.Proc, "map", range, Number((int)processes[s.Proc].Space.TryMap(s.Address, s.Length,
                    (Protection)s.Prot, MapFlags.PrivateAnonymous | MapFlags.Fixed, out _)));
                return;
            case ForkStepKind.SharedMap:
                Observe(s.Proc, "smap", range, Number((int)processes[s.Proc].Space.TryMap(s.Address, s.Length,
                    (Protection)s.Prot, MapFlags.Shared | MapFlags.Anonymous | MapFlags.Fixed, out _)));
                return;
            case ForkStepKind.Protect:
                Observe(s.Proc, "protect", range, Number((int)processes[s.Proc].Space.TryProtect(s.Address, s.Length, (Protection)s.Prot)));
                return;
            case ForkStepKind.Munmap:
                Observe(s.Proc, "munmap", range, Number((int)processes[s.Proc].Space.TryUnmap(s.Address, s.Length)));
                return;
            case ForkStepKind.Advise:
                Observe(s.Proc, "advise", range, Number((int)processes[s.Proc].Space.TryAdvise(s.Address, s.Length, s.Advice)));
                return;
            case ForkStepKind.Write:
                Observe(s.Proc, "write", $"{s.Address:x}", Outcome(processes[s.Proc].Cpu.TryStore(s.Address, s.Value), null));
                return;
            case ForkStepKind.Read:
                AccessOutcome read = processes[s.Proc].Cpu.TryLoad(s.Address, out byte value);
                Observe(s.Proc, "read", $"{s.Address:x}", Outcome(read, value));
                return;
            case ForkStepKind.Fork:
                Observe(s.Proc, "fork", Number(s.Child), "ok");
                processes[s.Child] = new ForkedProcess(processes[s.Proc].Space.Fork(), path);
                return;
            case ForkStepKind.Exit:
                Observe(s.Proc, "exit", "-", "ok");
                Add(counters, processes[s.Proc], path);
                processes[s.Proc].Dispose();
                processes.Remove(s.Proc);
                return;
            default:
                throw new InvalidOperationException($"unknown step kind {s.Kind}");
        }
    }

    // Maps, then smaps, then each sample's residency and byte: the order of the reference program (the loads fault
    // pages in).
    private static void Report(ForkScript script, ForkedProcess process, IReadOnlyList<ulong> samples, Action<string, string, string> observe)
    {
        string maps = string.Join(',', process.Space.GetMappings()
            .Where(m => m.End > script.RegionStart && m.Start < script.RegionEnd)
            .Select(m => $"{Math.Max(m.Start, script.RegionStart):x}-{Math.Min(m.End, script.RegionEnd):x}:{m.Permissions}"));
        observe("maps", "-", maps.Length == 0 ? "none" : maps);
        string? vma = null;
        foreach (string line in process.Space.GetSmaps().Split('\n'))
        {
            int space = line.IndexOf(' ');
            int colon = line.IndexOf(':');
            if (space > 0 && TryParseRange(line[..space], out ulong start, out ulong end))
            {
                vma = end > script.RegionStart && start < script.RegionEnd
                    ? $"{Math.Max(start, script.RegionStart):x}-{Math.Min(end, script.RegionEnd):x}"
                    : null;
            }
            else if (vma is not null && colon > 0 && SmapsFields.Contains(line[..colon]))
            {
                string kb = line[(colon + 1)..].Trim();
                observe("smaps", $"{vma}:{line[..colon]}", kb.EndsWith(" kB", StringComparison.Ordinal) ? kb[..^3] : kb);
            }
            else if (vma is not null && line.StartsWith("VmFlags:", StringComparison.Ordinal))
            {
                observe("vmflags", vma, ForkFlags(line["VmFlags:".Length..]));
            }
        }
        foreach (ulong address in samples)
        {
            observe("present", $"{address:x}", process.Space.IsResident(address) ? "1" : "0");
            AccessOutcome outcome = process.Cpu.TryLoad(address, out byte value);
            observe("value", $"{address:x}", Outcome(outcome, value));
        }
    }

    // The mnemonics fork acts on, as the reference program prints them: "dc" and "wf" joined by commas, or "-".
    private static string ForkFlags(string flags)
    {
        string[] present = flags.Split(' ', StringSplitOptions.RemoveEmptyEntries).Intersect(ForkFlagNames).ToArray();
        return present.Length == 0 ? "-" : string.Join(',', ForkFlagNames.Where(present.Contains));
    }

    private static bool TryParseRange(string text, out ulong start, out ulong end)
    {
        int dash = text.IndexOf('-');
        end = 0;
        start = 0;
        return dash > 0
            && ulong.TryParse(text.AsSpan(0, dash), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out start)
            && ulong.TryParse(text.AsSpan(dash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out end);
    }

    // The reference program's words: a byte for a load, "ok" for a store, the SIGSEGV code otherwise.
    private static string Outcome(AccessOutcome outcome, byte? value) => outcome switch
    {
        AccessOutcome.Ok => value is { } b ? Number(b) : "ok",
        AccessOutcome.SegvMapErr => "SEGV_MAPERR",
        AccessOutcome.SegvAccErr => "SEGV_ACCERR",
        _ => outcome.ToString(),
    };

    private static string Number(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static void Add(Dictionary<string, long> counters, ForkedProcess process, FaultPath path)
    {
        IReadOnlyDictionary<string, long> own = process.Space.GetCounters();
        counters[HandledOnPath] += own.GetValueOrDefault(SpaceHelpers.HandledOnPathCounter(path));
        counters[CowFault] += own.GetValueOrDefault(CowFault);
        counters[CowReuse] += own.GetValueOrDefault(CowReuse);
    }
}
