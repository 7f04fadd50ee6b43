namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// Every difference between the kernel's and Faultline's observations of one script: a value that differs, or an
/// observation only one side made (a VMA one side has, an smaps field Faultline does not print). Each difference names
/// the script, the step with its script line, the process and what was observed. Where a process's maps differ, the
/// smaps and fork flags of a VMA only one side has are left out (the maps difference already says it) and each field's total over the
/// region is compared instead, Pss excepted (each VMA's Pss is rounded down on its own, so its total depends on the
/// boundaries).
/// </summary>
internal static class ForkComparer
{
    public static List<string> Compare(ForkScript script, ForkRun kernel, ForkRun faultline)
    {
        var ours = new Dictionary<(int, int, string, string), string>();
        foreach (ForkObservation o in faultline.Observations)
        {
            ours[o.Identity] = o.Value;
        }
        var mapsDiffer = new HashSet<(int, int)>(kernel.Observations
            .Where(k => k.Kind == "maps" && ours.GetValueOrDefault(k.Identity) != k.Value)
            .Select(k => (k.Step, k.Proc)));
        var differences = new List<string>();
        var seen = new HashSet<(int, int, string, string)>();
        foreach (ForkObservation k in kernel.Observations)
        {
            seen.Add(k.Identity);
            if (ours.TryGetValue(k.Identity, out string? value) ? value != k.Value : !IsVmaOfDifferingMaps(k, mapsDiffer))
            {
                differences.Add(Describe(script, k.Step, k.Proc, k.Kind, k.Key, k.Value, value ?? "(absent)"));
            }
        }
        foreach (ForkObservation o in faultline.Observations.Where(o => !seen.Contains(o.Identity) && !IsVmaOfDifferingMaps(o, mapsDiffer)))
        {
            differences.Add(Describe(script, o.Step, o.Proc, o.Kind, o.Key, "(absent)", o.Value));
        }
        Dictionary<(int, int, string), long> kernelTotals = RegionTotals(kernel, mapsDiffer);
        Dictionary<(int, int, string), long> ourTotals = RegionTotals(faultline, mapsDiffer);
        foreach (((int step, int proc, string field), long total) in kernelTotals)
        {
            long ourTotal = ourTotals.GetValueOrDefault((step, proc, field));
            if (ourTotal != total)
            {
                differences.Add(Describe(script, step, proc, "smaps", $"region:{field}", $"{total}", $"{ourTotal}"));
            }
        }
        return differences;
    }

    // Each smaps field but Pss summed over the region's VMAs, for the reports whose maps differ.
    private static Dictionary<(int, int, string), long> RegionTotals(ForkRun run, HashSet<(int, int)> mapsDiffer)
    {
        var totals = new Dictionary<(int, int, string), long>();
        foreach (ForkObservation o in run.Observations.Where(o => o.Kind == "smaps" && IsVmaOfDifferingMaps(o, mapsDiffer)))
        {
            string field = o.Key[(o.Key.IndexOf(':') + 1)..];
            if (field != "Pss")
            {
                totals[(o.Step, o.Proc, field)] = totals.GetValueOrDefault((o.Step, o.Proc, field)) + long.Parse(o.Value);
            }
        }
        return totals;
    }

    private static bool IsVmaOfDifferingMaps(ForkObservation o, HashSet<(int, int)> mapsDiffer) =>
        o.Kind is "smaps" or "vmflags" && mapsDiffer.Contains((o.Step, o.Proc));

    private static string Describe(ForkScript script, int step, int proc, string kind, string key, string kernel, string ours)
    {
        string line = step >= 0 && step < script.Steps.Count ? script.Steps[step].ToScriptLine() : "end";
        return $"{script.Name}, step {step} ({line}), process {proc}, {kind} {key}: kernel {kernel}, Faultline {ours}";
    }
}
