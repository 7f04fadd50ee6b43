using System.Runtime.InteropServices;
using Faultline.Host;

namespace Faultline.Cli.Reporting;

/// <summary>Where the figures were measured: enough to tell two reports' machines apart.</summary>
internal sealed record MachineInfo
{
    /// <summary>Logical processors available to the process.</summary>
    public required int Cores { get; init; }
    /// <summary>CPU model (/proc/cpuinfo).</summary>
    public required string Cpu { get; init; }
    /// <summary>Operating system.</summary>
    public required string Os { get; init; }
    /// <summary>Kernel release.</summary>
    public required string Kernel { get; init; }
    /// <summary>
    /// Transparent huge pages mode in force on the host (<c>always</c>, <c>madvise</c>, <c>never</c>); the kernel path
    /// opts out per mapping, the TLB-miss floor too.
    /// </summary>
    public required string TransparentHugePages { get; init; }
    /// <summary>Probed: a read fault on untouched private anonymous memory maps the shared zero page.</summary>
    public required bool ReadFaultMapsZeroPage { get; init; }
    /// <summary>Memory of the machine in MiB.</summary>
    public required long MemoryMib { get; init; }
    /// <summary>.NET runtime.</summary>
    public required string Runtime { get; init; }
    /// <summary>Architecture.</summary>
    public required string Architecture { get; init; }
    /// <summary>Load average when the run started (other users of a shared machine show here).</summary>
    public required string LoadAverage { get; init; }
    /// <summary>UTC time the run started, ISO 8601.</summary>
    public required string Date { get; init; }

    /// <summary>What every "÷ kernel" figure is measured against: the kernel release and the facts probed on it.</summary>
    public string KernelLabel =>
        $"Linux {Kernel} (probed: read faults map the zero page: {(ReadFaultMapsZeroPage ? "yes" : "no")}; THP: {TransparentHugePages})";

    /// <summary>Describes this machine now.</summary>
    public static MachineInfo Collect() => new()
    {
        Cores = Environment.ProcessorCount,
        Cpu = FirstValue("/proc/cpuinfo", "model name") ?? "unknown",
        Os = RuntimeInformation.OSDescription,
        Kernel = ReadTrimmed("/proc/sys/kernel/osrelease") ?? Environment.OSVersion.VersionString,
        TransparentHugePages = HostFacts.Current.TransparentHugePages,
        ReadFaultMapsZeroPage = HostFacts.Current.ReadFaultMapsZeroPage,
        MemoryMib = long.TryParse(FirstValue("/proc/meminfo", "MemTotal")?.Split(' ')[0], out long kib) ? kib / 1024 : 0,
        Runtime = RuntimeInformation.FrameworkDescription,
        Architecture = RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant(),
        LoadAverage = string.Join(' ', (ReadTrimmed("/proc/loadavg") ?? "").Split(' ').Take(3)),
        Date = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
    };

    private static string? ReadTrimmed(string path)
    {
        try
        {
            return File.ReadAllText(path).Trim();
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    private static string? FirstValue(string path, string key)
    {
        string? text = ReadTrimmed(path);
        string? line = text?.Split('\n').FirstOrDefault(l => l.StartsWith(key, StringComparison.Ordinal));
        return line?[(line.IndexOf(':') + 1)..].Trim();
    }
}
