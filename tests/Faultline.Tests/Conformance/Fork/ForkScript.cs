using System.Text;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// A sequence of fork steps over one region, the same addresses in every process and on both sides: built by hand
/// (the fluent methods) or by <see cref="ForkScriptGenerator"/>. Process 0 starts with the whole region reserved
/// PROT_NONE; step numbers are indices into <see cref="Steps"/>.
/// </summary>
internal sealed class ForkScript
{
    private readonly List<ForkStep> _steps = [];
    private int _processes = 1;

    public ForkScript(ulong regionStart, ulong regionBytes, string name)
    {
        RegionStart = regionStart;
        RegionBytes = regionBytes;
        Name = name;
    }

    /// <summary>A script over the same region with these steps (processes numbered as the forks among them say).</summary>
    public static ForkScript From(ForkScript region, IEnumerable<ForkStep> steps, string name)
    {
        var script = new ForkScript(region.RegionStart, region.RegionBytes, name);
        foreach (ForkStep step in steps)
        {
            script.Add(step);
            if (step.Kind == ForkStepKind.Fork)
            {
                script._processes = Math.Max(script._processes, step.Child + 1);
            }
        }
        return script;
    }

    public ulong RegionStart { get; }
    public ulong RegionBytes { get; }
    public ulong RegionEnd => RegionStart + RegionBytes;

    /// <summary>How a failure names the script: its seed, or the scenario.</summary>
    public string Name { get; }

    public IReadOnlyList<ForkStep> Steps => _steps;

    /// <summary>Processes created so far, process 0 included: the number the next fork gives its child.</summary>
    public int Processes => _processes;

    public ForkScript Map(int proc, ulong address, ulong length, int prot) =>
        Add(new ForkStep(ForkStepKind.Map, proc, address, length, prot));

    public ForkScript SharedMap(int proc, ulong address, ulong length, int prot) =>
        Add(new ForkStep(ForkStepKind.SharedMap, proc, address, length, prot));

    public ForkScript Protect(int proc, ulong address, ulong length, int prot) =>
        Add(new ForkStep(ForkStepKind.Protect, proc, address, length, prot));

    public ForkScript Munmap(int proc, ulong address, ulong length) =>
        Add(new ForkStep(ForkStepKind.Munmap, proc, address, length));

    public ForkScript Advise(int proc, ulong address, ulong length, Advice advice) =>
        Add(new ForkStep(ForkStepKind.Advise, proc, address, length, Advice: advice));

    public ForkScript Write(int proc, ulong address, byte value) =>
        Add(new ForkStep(ForkStepKind.Write, proc, address, Value: value));

    public ForkScript Read(int proc, ulong address) => Add(new ForkStep(ForkStepKind.Read, proc, address));

    /// <summary>Forks <paramref name="proc"/>; the child is process <see cref="Processes"/> (before the call).</summary>
    public ForkScript Fork(int proc) => Add(new ForkStep(ForkStepKind.Fork, proc, Child: _processes++));

    public ForkScript Exit(int proc) => Add(new ForkStep(ForkStepKind.Exit, proc));

    public ForkScript Report(params ulong[] samples) => Add(new ForkStep(ForkStepKind.Report, -1, Samples: samples));

    /// <summary>The script as the reference program reads it, one step a line.</summary>
    public string ToText()
    {
        var text = new StringBuilder();
        foreach (ForkStep step in _steps)
        {
            text.Append(step.ToScriptLine()).Append('\n');
        }
        return text.ToString();
    }

    private ForkScript Add(ForkStep step)
    {
        _steps.Add(step);
        return this;
    }
}
