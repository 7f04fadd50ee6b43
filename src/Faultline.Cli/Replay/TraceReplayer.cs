using System.Globalization;

namespace Faultline.Cli.Replay;

/// <summary>
/// Replays a <see cref="Trace"/> on one of Faultline's fault paths: every exec starts an address space laid out as the
/// kernel laid it out (<see cref="ReplaySpace.Create"/>), a clone without CLONE_VM forks it
/// (<see cref="AddressSpace.Fork"/>), a clone with CLONE_VM (a thread, vfork) shares it; every memory call is replayed
/// in the recorded order and compared with the kernel's result (<see cref="CallReplay"/>), every fault is an access of
/// the thread's Cpu that must succeed, as it did on the kernel.
/// </summary>
/// <remarks>One replay at a time per instance; <see cref="ReplayThreads.Recorded"/> runs each recorded thread's
/// events on a thread of its own, handing a turn from event to event.</remarks>
internal sealed class TraceReplayer
{
    private readonly Trace _trace;
    private readonly FaultPath _path;
    private readonly string _pathName;
    private readonly long _physicalBytes;
    private ReplayProcesses _processes = null!;
    private ReplayReport _report = null!;

    /// <summary>A replayer of <paramref name="trace"/> on <paramref name="path"/>.</summary>
    public TraceReplayer(Trace trace, FaultPath path, string pathName, long physicalBytes = 4L << 30)
    {
        _trace = trace;
        _path = path;
        _pathName = pathName;
        _physicalBytes = physicalBytes;
    }

    /// <summary>Replays the whole trace and returns what it found.</summary>
    public ReplayReport Run(ReplayThreads threads)
    {
        _report = new ReplayReport { Path = _pathName };
        IReadOnlyList<ReplayEvent> events = ReplayEvent.Order(_trace);
        using (_processes = new ReplayProcesses(_trace, _path, _physicalBytes))
        {
            if (threads == ReplayThreads.Serial)
            {
                foreach (ReplayEvent e in events)
                {
                    Step(e);
                }
            }
            else
            {
                RunOnRecordedThreads(events);
            }
            (_report.Execs, _report.Forks, _report.Threads) = (_processes.Execs, _processes.Forks, _processes.Threads);
        }
        return _report;
    }
    // One thread per recorded thread; each waits for the turn of its next event, runs it and passes the turn on.
    private void RunOnRecordedThreads(IReadOnlyList<ReplayEvent> events)
    {
        var gate = new object();
        int turn = 0;
        Exception? failure = null;
        var workers = new List<Thread>();
        foreach (IGrouping<int, int> mine in Enumerable.Range(0, events.Count).GroupBy(i => events[i].Tid))
        {
            int[] indices = mine.ToArray();
            var worker = new Thread(() =>
            {
                foreach (int index in indices)
                {
                    lock (gate)
                    {
                        while (turn != index && failure is null)
                        {
                            Monitor.Wait(gate);
                        }
                        if (failure is not null)
                        {
                            return;
                        }
                    }
                    try
                    {
                        Step(events[index]);
                    }
                    catch (Exception e)
                    {
                        lock (gate)
                        {
                            failure ??= e;
                            Monitor.PulseAll(gate);
                        }
                        return;
                    }
                    lock (gate)
                    {
                        turn++;
                        Monitor.PulseAll(gate);
                    }
                }
            })
            { IsBackground = true, Name = $"replay {mine.Key}" };
            workers.Add(worker);
            worker.Start();
        }
        foreach (Thread worker in workers)
        {
            worker.Join();
        }
        if (failure is not null)
        {
            throw new InvalidOperationException($"replay failed: {failure.Message}", failure);
        }
    }

    private void Step(ReplayEvent e)
    {
        if (e.Fault is { } fault)
        {
            Fault(fault);
            return;
        }
        TraceCall call = e.Call!;
        if (ReplayProcesses.IsProcessCall(call.Name))
        {
            _processes.Apply(call);
            return;
        }
        _report.Calls++;
        ReplaySpace? space = _processes.SpaceOf(call.Tid);
        if (space is null)
        {
            _report.Unmodelled.Add((call.Text, "no address space: the thread's exec or creation was not traced"));
            return;
        }
        CallOutcome outcome = CallReplay.Execute(space.Space, call, _trace.FileSystems);
        Count(space, call.Text, outcome);
        if (outcome.StandIn && call.File is { } file)
        {
            _report.StandIns[file] = _report.StandIns.GetValueOrDefault(file) + 1;
        }
        space.Remember(call.Text);
    }

    private void Count(ReplaySpace space, string text, CallOutcome outcome)
    {
        switch (outcome.Kind)
        {
            case OutcomeKind.Equal:
                _report.Equal++;
                break;
            case OutcomeKind.Different:
                _report.Differences.Add(new ReplayDifference(outcome.StandIn ? text + " (file mapping replayed as an anonymous stand-in)" : text,
                    outcome.Kernel, outcome.Faultline, space.Recent));
                break;
            default:
                _report.Unmodelled.Add((text, outcome.Reason ?? "not modelled"));
                break;
        }
    }

    private void Fault(TraceFault fault)
    {
        _report.Calls++;
        _report.Faults++;
        string text = string.Create(CultureInfo.InvariantCulture, $"[{fault.Tid}] {fault.Access.ToString().ToLowerInvariant()} fault at 0x{fault.Address:x}");
        if (_processes.SpaceOf(fault.Tid) is not { } space)
        {
            _report.Unmodelled.Add((text, "no address space: the thread's exec or creation was not traced"));
            return;
        }
        Cpu cpu = space.CpuFor(fault.Tid);
        AccessOutcome result = fault.Access switch
        {
            AccessKind.Write => cpu.TryStore(fault.Address, (byte)0),
            AccessKind.Execute => cpu.TryFetch(fault.Address, out byte _),
            _ => cpu.TryLoad(fault.Address, out byte _),
        };
        // The kernel resolved the fault (the program went on): Faultline must too.
        Count(space, text, new CallOutcome(result == AccessOutcome.Ok ? OutcomeKind.Equal : OutcomeKind.Different, "resolved",
            result == AccessOutcome.Ok ? "resolved" : result.ToString()));
    }
}
