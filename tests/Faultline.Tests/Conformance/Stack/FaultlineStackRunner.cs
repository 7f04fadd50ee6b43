using System.Globalization;
using System.Text;
using Faultline.Host;

namespace Faultline.Tests.Conformance.Stack;

/// <summary>
/// Runs a stack-growth script on a Faultline address space configured like the reference program's process (the
/// <c>mmap_min_addr</c> the host's stack expansion applies, zero page on read, the script's stack and lock limits),
/// answering in the program's output format so the two outputs compare line by line.
/// </summary>
internal static class FaultlineStackRunner
{
    /// <summary>Runs <paramref name="script"/> and returns its output lines.</summary>
    public static string[] Run(StackScript script)
    {
        using var space = new AddressSpace(new FaultlineOptions
        {
            PhysicalMemoryBytes = 64 << 20,
            MmapMinAddress = KernelStackRunner.ExpansionMinAddress,
            MapZeroPageOnRead = HostFacts.Current.ReadFaultMapsZeroPage,
            StackLimit = script.StackLimit,
            MemoryLockLimit = script.MemoryLockLimit ?? HostFacts.Current.MemoryLockLimit,
            CapIpcLock = script.MemoryLockLimit is null && HostFacts.Current.HasCapIpcLock,
        });
        using Cpu cpu = space.AttachCpu();
        var lines = new List<string>();
        for (int step = 0; step < script.Steps.Count; step++)
        {
            string[] words = script.Steps[step].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            switch (words[0])
            {
                case "map":
                    Errno mapped = space.TryMap(Number(words[1]), Number(words[2]), (Protection)Number(words[3]), (MapFlags)Number(words[4]), out _);
                    lines.Add($"{step} map {(int)mapped}");
                    break;
                case "munmap":
                    lines.Add($"{step} munmap {(int)space.TryUnmap(Number(words[1]), Number(words[2]))}");
                    break;
                case "protect":
                    lines.Add($"{step} protect {(int)space.TryProtect(Number(words[1]), Number(words[2]), (Protection)Number(words[3]))}");
                    break;
                case "write":
                    lines.Add($"{step} write {Name(cpu.TryStore(Number(words[1]), (byte)Number(words[2])), "ok")}");
                    break;
                case "read":
                    AccessOutcome read = cpu.TryLoad(Number(words[1]), out byte value);
                    lines.Add($"{step} read {Name(read, value.ToString(CultureInfo.InvariantCulture))}");
                    break;
                case "report":
                    Report(space, script, step, lines);
                    break;
                default:
                    throw new InvalidOperationException($"bad step '{script.Steps[step]}'");
            }
        }
        return [.. lines];
    }

    private static void Report(AddressSpace space, StackScript script, int step, List<string> lines)
    {
        ulong end = script.RegionStart + script.RegionBytes;
        string maps = string.Join(",", space.GetMappings()
            .Where(m => m.End > script.RegionStart && m.Start < end)
            .Select(m => $"{m.Start:x}-{m.End:x}:{m.Permissions}"));
        lines.Add($"{step} maps {(maps.Length == 0 ? "none" : maps)}");
        string smaps = string.Concat(HostSmaps.Parse(Encoding.ASCII.GetBytes(space.GetSmaps()), script.RegionStart, end)
            .Select(e => $" {e.Start:x}-{e.End:x}:{e.RssKb}:{e.LockedKb}:{string.Join('+', e.VmFlags.Split(' ', StringSplitOptions.RemoveEmptyEntries))}"));
        lines.Add($"{step} smaps{(smaps.Length == 0 ? " none" : smaps)}");
        var present = new StringBuilder();
        for (ulong page = script.RegionStart; page < end; page += PageGeometry.PageSize)
        {
            present.Append(space.IsResident(page) ? '1' : '0');
        }
        lines.Add($"{step} present {present}");
        lines.Add($"{step} locked {space.LockedPages * (long)(PageGeometry.PageSize / 1024)}");
    }

    private static string Name(AccessOutcome outcome, string ok) => outcome switch
    {
        AccessOutcome.Ok => ok,
        AccessOutcome.SegvMapErr => "SEGV_MAPERR",
        AccessOutcome.SegvAccErr => "SEGV_ACCERR",
        _ => outcome.ToString(),
    };

    private static ulong Number(string text) =>
        text.StartsWith("0x", StringComparison.Ordinal)
            ? ulong.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture)
            : ulong.Parse(text, CultureInfo.InvariantCulture);
}
