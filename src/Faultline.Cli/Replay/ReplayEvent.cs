namespace Faultline.Cli.Replay;

/// <summary>One step of a replay: a call or a page fault of a recorded thread.</summary>
/// <param name="Tid">The recorded thread.</param>
/// <param name="Call">The call, or null for a fault.</param>
/// <param name="Fault">The fault, or null for a call.</param>
internal sealed record ReplayEvent(int Tid, TraceCall? Call, TraceFault? Fault)
{
    /// <summary>
    /// The calls and faults of <paramref name="trace"/> in one order: the calls in trace order, each fault after every
    /// call that had entered the kernel before it (its thread's previous call included, as a thread cannot fault
    /// inside a call it is still in).
    /// </summary>
    public static IReadOnlyList<ReplayEvent> Order(Trace trace)
    {
        var events = new List<(double Key, ReplayEvent Event)>();
        foreach (TraceCall call in trace.Calls)
        {
            events.Add((call.Seq, new ReplayEvent(call.Tid, call, null)));
        }
        if (trace.Faults.Count > 0)
        {
            // Calls by entry time, with the latest trace position among those entered so far.
            TraceCall[] byTime = trace.Calls.OrderBy(c => c.Time).ToArray();
            int[] latest = new int[byTime.Length];
            for (int i = 0; i < byTime.Length; i++)
            {
                latest[i] = Math.Max(i == 0 ? -1 : latest[i - 1], byTime[i].Seq);
            }
            double[] times = byTime.Select(c => c.Time).ToArray();
            int n = 0;
            foreach (TraceFault fault in trace.Faults)
            {
                int found = Array.BinarySearch(times, fault.Time);
                int entered = (found >= 0 ? found : ~found) - 1;
                while (entered + 1 < times.Length && times[entered + 1] <= fault.Time)
                {
                    entered++;
                }
                // After that call, before the next; faults keep their own order among themselves.
                double key = (entered < 0 ? -1 : latest[entered]) + 0.5 + n++ * 1e-9;
                events.Add((key, new ReplayEvent(fault.Tid, null, fault)));
            }
        }
        return events.OrderBy(e => e.Key).Select(e => e.Event).ToList();
    }
}
