using Faultline.Cli.Replay;
using Xunit;

namespace Faultline.Tests.Replay;

/// <summary>A test that records a real program: skipped, with the reason, where the program, strace or gcc is missing.</summary>
public sealed class RealProgramFactAttribute : FactAttribute
{
    /// <summary>Needs <paramref name="program"/> on PATH (and strace, and gcc for the exec layout helper).</summary>
    public RealProgramFactAttribute(string program)
    {
        string? missing = new[] { program, "strace", "gcc" }.FirstOrDefault(p => HostTool.Find(p) is null);
        if (missing is not null)
        {
            Skip = $"{missing} is not installed";
        }
    }
}
