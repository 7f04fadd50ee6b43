using System.Globalization;

namespace Faultline.Host;

/// <summary>
/// The facts about the host kernel that a comparison with it depends on, each decided by a probe of this process
/// (never by the kernel's version string, which is only reported). Probed once per process, on first use.
/// </summary>
/// <remarks>
/// Kernel builds differ: one maps the shared zero page on a read fault of private anonymous memory (Rss stays 0),
/// another allocates a private zeroed page per read fault (as a kernel with <c>mm_forbids_zeropage</c>, or one booted
/// without the zero page, does). The conformance harness configures Faultline to match what the probe found.
/// </remarks>
public static class HostFacts
{
    private const int ProbePages = 4;
    private const int CapSysRawio = 17;

    private static readonly Lazy<bool> s_readFaultMapsZeroPage = new(ProbeReadFaultMapsZeroPage);

    /// <summary>
    /// True when a read fault of fresh private anonymous memory maps the shared zero page (nothing becomes resident in
    /// smaps Rss); false when each read fault allocates a private zeroed page.
    /// </summary>
    public static bool ReadFaultMapsZeroPage => s_readFaultMapsZeroPage.Value;

    /// <summary>The kernel's release string (<c>/proc/sys/kernel/osrelease</c>), for reports only.</summary>
    public static string KernelRelease => ReadText("/proc/sys/kernel/osrelease") ?? "unknown";

    /// <summary>The THP mode in force (<c>always</c>, <c>madvise</c>, <c>never</c>), or "unavailable".</summary>
    public static string TransparentHugePages
    {
        get
        {
            string? text = ReadText("/sys/kernel/mm/transparent_hugepage/enabled");
            int open = text?.IndexOf('[') ?? -1;
            int close = text?.IndexOf(']') ?? -1;
            return open >= 0 && close > open ? text![(open + 1)..close] : "unavailable";
        }
    }

    /// <summary><c>vm.mmap_min_addr</c> as the sysctl reports it (the LSM may enforce a higher floor on hints).</summary>
    public static ulong MmapMinAddress =>
        ulong.TryParse(ReadText("/proc/sys/vm/mmap_min_addr"), NumberStyles.None, CultureInfo.InvariantCulture, out ulong v) ? v : 0;

    /// <summary>
    /// True when this process holds <c>CAP_SYS_RAWIO</c> in its effective set, which lets Linux map below
    /// <c>mmap_min_addr</c> (Faultline models an unprivileged guest and refuses with EPERM).
    /// </summary>
    public static bool MayMapBelowMmapMinAddress
    {
        get
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("CapEff:", StringComparison.Ordinal))
                {
                    ulong caps = ulong.Parse(line["CapEff:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                    return (caps & (1UL << CapSysRawio)) != 0;
                }
            }
            return false;
        }
    }

    /// <summary>One line naming every probed fact, for test output and reports.</summary>
    public static string Describe() =>
        $"kernel {KernelRelease}; read fault maps the zero page: {(ReadFaultMapsZeroPage ? "yes" : "no (private zeroed pages)")}; "
        + $"THP {TransparentHugePages}; mmap_min_addr {MmapMinAddress}; CAP_SYS_RAWIO {(MayMapBelowMmapMinAddress ? "yes" : "no")}";

    // Reads one byte of each of a few fresh private anonymous pages, then asks smaps how many became resident: none
    // when they map the zero page, all of them when each got its own page. Where pagemap shows PFNs (privileged), they
    // must agree: one shared PFN for the zero page, distinct PFNs otherwise.
    private static unsafe bool ProbeReadFaultMapsZeroPage()
    {
        ulong length = ProbePages * (ulong)Environment.SystemPageSize;
        nint p = LibC.MapAnonymousSmallPages(length);
        try
        {
            byte sum = 0;
            for (int i = 0; i < ProbePages; i++)
            {
                sum |= Volatile.Read(ref ((byte*)p)[i * Environment.SystemPageSize]);
            }
            if (sum != 0)
            {
                throw new InvalidOperationException("fresh anonymous memory did not read as zero");
            }
            ulong rssKb = HostSmaps.ReadRegion((ulong)p, (ulong)p + length).Aggregate(0UL, (total, e) => total + e.RssKb);
            bool zeroPage = rssKb switch
            {
                0 => true,
                _ when rssKb * 1024 == length => false,
                _ => throw new InvalidOperationException($"read faults of {ProbePages} pages left Rss {rssKb} kB: neither the zero page nor private pages"),
            };
            var frames = new HashSet<ulong>();
            for (int i = 0; i < ProbePages; i++)
            {
                ulong pfn = HostPagemap.ReadEntry((ulong)p + (ulong)(i * Environment.SystemPageSize)) & HostPagemap.PM_PFN_MASK;
                if (pfn != 0)
                {
                    frames.Add(pfn);
                }
            }
            if (frames.Count > 0 && (frames.Count == 1) != zeroPage)
            {
                throw new InvalidOperationException($"smaps (Rss {rssKb} kB) and pagemap ({frames.Count} distinct PFNs) disagree about the zero page");
            }
            return zeroPage;
        }
        finally
        {
            LibC.Munmap(p, (nuint)length);
        }
    }

    private static string? ReadText(string path)
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
}
