using System.Globalization;

namespace Faultline.Cli.Replay;

/// <summary>
/// The host facts that decide where the kernel places mappings of a program run with randomisation off:
/// <c>vm.mmap_min_addr</c>, <c>vm.max_map_count</c>, <c>vm.legacy_va_layout</c>, <c>CAP_IPC_LOCK</c>, and x86-64's
/// <c>mmap_base()</c>.
/// </summary>
internal static class HostLayout
{
    /// <summary>128 MiB: the least gap between the stack's top and <c>mmap_base</c> (<c>SIZE_128M</c>).</summary>
    private const ulong MinGap = 128UL << 20;

    /// <summary><c>vm.mmap_min_addr</c> (Linux's default 64 KiB when it cannot be read).</summary>
    public static ulong MmapMinAddress => ReadNumber("/proc/sys/vm/mmap_min_addr") is { } v ? (ulong)v : 0x10000;

    /// <summary><c>vm.max_map_count</c> (65530 when it cannot be read).</summary>
    public static int MaxMapCount => ReadNumber("/proc/sys/vm/max_map_count") is { } v ? (int)Math.Min(v, int.MaxValue) : 65530;

    /// <summary>True when <c>vm.legacy_va_layout</c> makes mmap place bottom-up, which a replay does not model.</summary>
    public static bool LegacyLayout => ReadNumber("/proc/sys/vm/legacy_va_layout") is > 0;

    /// <summary>True when this process holds <c>CAP_IPC_LOCK</c> (bit 14 of <c>CapEff</c>), as its children do.</summary>
    public static bool CapIpcLock
    {
        get
        {
            try
            {
                string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("CapEff:", StringComparison.Ordinal));
                return line is not null && (ulong.Parse(line[7..].Trim(), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture) & (1UL << 14)) != 0;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
            {
                return false;
            }
        }
    }

    /// <summary>
    /// x86-64's <c>mmap_base()</c> without randomisation: the stack limit plus <c>stack_guard_gap</c> (256 pages), held
    /// within [128 MiB, 5/6 of TASK_SIZE], below TASK_SIZE. An unlimited stack selects the legacy bottom-up layout.
    /// </summary>
    /// <exception cref="InvalidOperationException">The stack is unlimited.</exception>
    public static ulong MmapBase(ulong stackLimit)
    {
        if (stackLimit == ulong.MaxValue)
        {
            throw new InvalidOperationException("the stack limit is unlimited, which selects the legacy bottom-up mmap layout; replay models the top-down one (ulimit -s 8192)");
        }
        ulong gap = stackLimit;
        const ulong pad = 256UL << PageGeometry.PageShift;
        if (gap + pad > gap)
        {
            gap += pad;
        }
        gap = Math.Clamp(gap, MinGap, PageGeometry.TaskSize / 6 * 5);
        return PageGeometry.PageAlign(PageGeometry.TaskSize - gap);
    }

    /// <summary>
    /// True when this kernel places a hint-less private anonymous mapping of whole PMDs on a PMD boundary (Linux 6.7+
    /// with transparent huge pages built in): two 4 MiB mappings, both aligned (by chance: one in 2^18).
    /// </summary>
    public static bool ThpAlignedPlacement => s_thpAligned.Value;

    private static readonly Lazy<bool> s_thpAligned = new(() =>
    {
        const ulong length = 4UL << 20;
        bool aligned = true;
        for (int i = 0; i < 2; i++)
        {
            nint p = Faultline.Host.LibC.Mmap(0, (nuint)length, 0, 0x02 | 0x20 | 0x4000, -1, 0);
            if (p == -1)
            {
                return false;
            }
            aligned &= ((ulong)p & (PageGeometry.PmdSize - 1)) == 0;
            Faultline.Host.LibC.Munmap(p, (nuint)length);
        }
        return aligned;
    });

    /// <summary>The type of the file system <paramref name="file"/> is on (the longest mount point over it in <c>/proc/self/mountinfo</c>), or <c>unknown</c>.</summary>
    public static string FileSystemOf(string file)
    {
        try
        {
            string best = "", type = "unknown";
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
                string[] fields = line.Split(' ');
                int dash = Array.IndexOf(fields, "-");
                if (fields.Length < 5 || dash < 0 || dash + 1 >= fields.Length)
                {
                    continue;
                }
                string mount = fields[4].Replace("\\040", " ", StringComparison.Ordinal);
                bool under = file == mount || file.StartsWith(mount.EndsWith('/') ? mount : mount + "/", StringComparison.Ordinal);
                if (under && mount.Length >= best.Length)
                {
                    best = mount;
                    type = fields[dash + 1];
                }
            }
            return type;
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static long? ReadNumber(string path)
    {
        try
        {
            return long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }
}
