using Faultline.Examples.GuestLoader;
using Xunit;

namespace Faultline.Tests.Examples;

/// <summary>
/// The guest-loader example (examples/GuestLoader) on the running executable: demand loading through the user-fault
/// channel fills only the pages touched and fills them as the file holds them, the UART prints the interpreter path
/// read from guest memory, and the dirty log restores exactly the pages written after the snapshot.
/// </summary>
public sealed class GuestLoaderExampleTests
{
    [Theory]
    [InlineData(FaultPath.MmapLock)]
    [InlineData(FaultPath.Speculative)]
    [InlineData(FaultPath.VmaLock)]
    public void LoadsPrintsAndRestoresOnEveryFaultPath(FaultPath path)
    {
        var output = new StringWriter();
        LoaderReport report = LoaderDemo.Run("/proc/self/exe", output, path);
        ElfImage image = ElfImage.Load("/proc/self/exe");

        Assert.True(report.AllChecksHeld, output.ToString());
        Assert.True(report.EntryBytesMatch);
        Assert.InRange(report.PagesLoaded, 1, report.ImagePages - 1);
        Assert.Equal(image.Interpreter ?? "ELF", Assert.Single(report.UartLines));
        Assert.Equal(report.PagesWritten, report.PagesRestored);
        Assert.True(report.RestoreMatches);
    }

    [Fact]
    public void AMissingFileIsAnErrorNotACrash()
    {
        Assert.Equal(2, Program.Main(["/nonexistent/guest.elf"]));
    }
}
