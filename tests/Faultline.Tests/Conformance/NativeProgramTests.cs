using System.Diagnostics;
using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>The reference programs the host kernel runs are compiled once, run, and fail loudly when they do not compile.</summary>
public sealed class NativeProgramTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("faultline-native-test").FullName;

    [Fact]
    public void BuildsOnceAndRuns()
    {
        string source = Path.Combine(_folder, "answer.c");
        File.WriteAllText(source, $"#include <stdio.h>\nint main(void) {{ printf(\"%d\\n\", 6 * 7); return 0; }} /* {Guid.NewGuid()} */\n");

        string first = NativeProgram.Build(source);
        DateTime built = File.GetLastWriteTimeUtc(first);
        string second = NativeProgram.Build(source);

        Assert.Equal(first, second);
        Assert.Equal(built, File.GetLastWriteTimeUtc(second));
        using var process = Process.Start(new ProcessStartInfo(first) { RedirectStandardOutput = true })!;
        Assert.Equal("42", process.StandardOutput.ReadToEnd().Trim());
        process.WaitForExit();
        Assert.Equal(0, process.ExitCode);
        File.Delete(first);
    }

    [Fact]
    public void ACompileErrorNamesTheSource()
    {
        string source = Path.Combine(_folder, "broken.c");
        File.WriteAllText(source, $"int main(void) {{ return undeclared_{Guid.NewGuid():N}; }}\n");

        var error = Assert.Throws<InvalidOperationException>(() => NativeProgram.Build(source));

        Assert.Contains("broken.c", error.Message);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
