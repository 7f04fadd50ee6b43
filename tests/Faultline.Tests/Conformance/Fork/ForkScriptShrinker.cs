namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// Shrinks a failing fork script: drops one step at a time, keeping a drop whenever the smaller script is still valid
/// (every step's process alive, every child number new) and still fails, until no single step can go. A failure report
/// then shows a handful of steps instead of forty.
/// </summary>
internal static class ForkScriptShrinker
{
    public static ForkScript Shrink(ForkScript script, Func<ForkScript, bool> fails)
    {
        List<ForkStep> steps = [.. script.Steps];
        bool dropped = true;
        while (dropped)
        {
            dropped = false;
            for (int i = steps.Count - 1; i >= 0; i--)
            {
                List<ForkStep> candidate = [.. steps[..i], .. steps[(i + 1)..]];
                if (IsValid(candidate) && fails(ForkScript.From(script, candidate, script.Name)))
                {
                    steps = candidate;
                    dropped = true;
                }
            }
        }
        return ForkScript.From(script, steps, $"{script.Name}, shrunk");
    }

    private static bool IsValid(List<ForkStep> steps)
    {
        var live = new HashSet<int> { 0 };
        var used = new HashSet<int> { 0 };
        foreach (ForkStep step in steps)
        {
            if (step.Kind == ForkStepKind.Report)
            {
                continue;
            }
            if (!live.Contains(step.Proc) || (step.Kind == ForkStepKind.Fork && !used.Add(step.Child)))
            {
                return false;
            }
            if (step.Kind == ForkStepKind.Fork)
            {
                live.Add(step.Child);
            }
            else if (step.Kind == ForkStepKind.Exit)
            {
                live.Remove(step.Proc);
            }
        }
        return true;
    }
}
