using System.Globalization;
using System.Text;

namespace Faultline.Host;

/// <summary>
/// The facts about the host kernel that a conformance result depends on and that differ between machines, each found by
/// probing this process's own behaviour (never by the kernel version or command line). Computed once per process on
/// first use of <see cref="Current"/>.
/// </summary>
public sealed class HostFacts
{
    /// <summary>Pages read in each half of the zero-page probe.</summary>
    public const int ZeroPageProbePages = 4;

    /// <summary><c>CAP_SYS_RAWIO</c>: lets <c>cap_mmap_addr</c> map below <c>vm.mmap_min_addr</c>.</summary>
    public const int CapSysRawio = 17;

    private static readonly Lazy<HostFacts> s_current = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    private HostFacts(bool readFaultMapsZeroPage, bool? pagemapShowsZeroPage, ulong mmapMinAddress, ulong effectiveCapabilities,
        int fixedMapOfPageZeroErrno, string transparentHugePages, ulong memoryLockLimit, int faultAroundPages)
    {
        FaultAroundPages = faultAroundPages;
        MemoryLockLimit = memoryLockLimit;
        ReadFaultMapsZeroPage = readFaultMapsZeroPage;
        PagemapShowsZeroPage = pagemapShowsZeroPage;
        MmapMinAddress = mmapMinAddress;
        EffectiveCapabilities = effectiveCapabilities;
        FixedMapOfPageZeroErrno = fixedMapOfPageZeroErrno;
        TransparentHugePages = transparentHugePages;
    }

    /// <summary>This process's facts, probed on first use.</summary>
    public static HostFacts Current => s_current.Value;

    /// <summary>
    /// A read fault on untouched private anonymous memory maps the shared zero page (smaps Rss stays 0); false when the
    /// kernel allocates a private zeroed page per read fault instead (<c>mm_forbids_zeropage</c>, or a kernel built or
    /// booted without the zero page), so every read page counts in Rss. Decided by <see cref="ProbeReadFaultZeroPage"/>.
    /// </summary>
    public bool ReadFaultMapsZeroPage { get; }

    /// <summary>
    /// The pagemap cross-check of the zero-page probe: true when every read page showed the same PFN, false when each had
    /// its own; null when the PFNs are not readable (they read as 0 without <c>CAP_SYS_ADMIN</c>).
    /// </summary>
    public bool? PagemapShowsZeroPage { get; }

    /// <summary>
    /// <c>fault_around_pages</c> (<c>fault_around_bytes</c> ÷ 4 KiB, a debugfs knob, 16 by default): how many cached pages
    /// a read fault on shared memory maps around it. Decided by <see cref="ProbeFaultAroundPages"/>.
    /// </summary>
    public int FaultAroundPages { get; }

    /// <summary><c>/proc/sys/vm/mmap_min_addr</c>.</summary>
    public ulong MmapMinAddress { get; }

    /// <summary><c>CapEff</c> of <c>/proc/self/status</c>: the effective capability set.</summary>
    public ulong EffectiveCapabilities { get; }

    /// <summary><c>CAP_IPC_LOCK</c>: lets <c>mlock</c> ignore <c>RLIMIT_MEMLOCK</c>.</summary>
    public const int CapIpcLock = 14;

    /// <summary>The process has <c>CAP_IPC_LOCK</c> in its effective set.</summary>
    public bool HasCapIpcLock => (EffectiveCapabilities & (1UL << CapIpcLock)) != 0;

    /// <summary>
    /// The soft <c>RLIMIT_MEMLOCK</c> in bytes ("Max locked memory" of <c>/proc/self/limits</c>; <see cref="ulong.MaxValue"/>
    /// for unlimited).
    /// </summary>
    public ulong MemoryLockLimit { get; }

    /// <summary>The process has <c>CAP_SYS_RAWIO</c> in its effective set.</summary>
    public bool HasCapSysRawio => (EffectiveCapabilities & (1UL << CapSysRawio)) != 0;

    /// <summary>
    /// The errno of <c>mmap(0, PAGE_SIZE, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_FIXED_NOREPLACE)</c>: 0 when
    /// page 0 could be mapped (the mapping was removed at once), <c>EPERM</c> when <c>vm.mmap_min_addr</c> forbids it to
    /// this process. Decided by <see cref="ProbeFixedMapOfPageZero"/>.
    /// </summary>
    public int FixedMapOfPageZeroErrno { get; }

    /// <summary>
    /// The selected word of <c>/sys/kernel/mm/transparent_hugepage/enabled</c> (<c>always</c>, <c>madvise</c>,
    /// <c>never</c>), or <c>unavailable</c> on a kernel without THP.
    /// </summary>
    public string TransparentHugePages { get; }

    /// <summary>The facts, one per line, for a test log.</summary>
    /// <returns>The description.</returns>
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append("read faults map the zero page: ").Append(ReadFaultMapsZeroPage ? "yes" : "no (private zeroed pages)")
            .Append(", pagemap cross-check: ").Append(PagemapShowsZeroPage switch
            {
                true => "same PFN",
                false => "distinct PFNs",
                null => "PFNs not readable",
            }).Append('\n');
        text.Append("vm.mmap_min_addr: ").Append(MmapMinAddress).Append(", CapEff: ")
            .Append(EffectiveCapabilities.ToString("x16", CultureInfo.InvariantCulture))
            .Append(HasCapSysRawio ? " (CAP_SYS_RAWIO)" : " (no CAP_SYS_RAWIO)")
            .Append(", MAP_FIXED_NOREPLACE of page 0: ").Append(Errno.Name(FixedMapOfPageZeroErrno))
            .Append(", CAP_IPC_LOCK: ").Append(HasCapIpcLock ? "yes" : "no")
            .Append(", RLIMIT_MEMLOCK: ").Append(MemoryLockLimit == ulong.MaxValue ? "unlimited" : MemoryLockLimit.ToString(CultureInfo.InvariantCulture)).Append('\n');
        text.Append("transparent_hugepage/enabled: ").Append(TransparentHugePages)
            .Append(", fault-around: ").Append(FaultAroundPages).Append(" pages");
        return text.ToString();
    }

    /// <summary>
    /// Reads untouched private anonymous pages and measures what the reads mapped: <see cref="ZeroPageProbePages"/>
    /// pages with CPU loads through a pointer and as many with <c>process_vm_readv</c> (the conformance suite's read),
    /// each group its own VMA, then the smaps Rss of each VMA: 0 kB means the zero page, a page's worth per read means
    /// private pages. Where pagemap shows PFNs, they must agree (one PFN for all reads means the zero page).
    /// </summary>
    /// <param name="pagemapShowsZeroPage">The pagemap cross-check, null when PFNs are not readable.</param>
    /// <returns>Whether a read fault maps the zero page.</returns>
    /// <exception cref="InvalidOperationException">The two kinds of read, or smaps and pagemap, disagree.</exception>
    public static unsafe bool ProbeReadFaultZeroPage(out bool? pagemapShowsZeroPage)
    {
        const ulong groupBytes = ZeroPageProbePages * Linux.PAGE_SIZE;
        // Two read-write groups with a PROT_NONE page between them, so each group is a VMA of its own; the region's
        // guard space keeps them from merging with anything else.
        using var region = new HostRegion((2 * groupBytes) + Linux.PAGE_SIZE);
        ulong loaded = region.Start, remote = region.Start + groupBytes + Linux.PAGE_SIZE;
        Require(region.Protect(loaded, groupBytes, Linux.PROT_READ | Linux.PROT_WRITE), "mprotect of the loaded group");
        Require(region.Protect(remote, groupBytes, Linux.PROT_READ | Linux.PROT_WRITE), "mprotect of the remote group");
        for (int i = 0; i < ZeroPageProbePages; i++)
        {
            ulong offset = (ulong)i * Linux.PAGE_SIZE;
            // Volatile only so the load is not elided (it pairs with no write): it is the read fault being probed.
            _ = Volatile.Read(ref *(byte*)(loaded + offset));
            Require(HostProbe.ReadErrno(remote + offset, out _), "process_vm_readv");
        }

        bool loadsMapZero = ZeroPageByRss(loaded, groupBytes, "CPU loads");
        bool remoteMapsZero = ZeroPageByRss(remote, groupBytes, "process_vm_readv");
        if (loadsMapZero != remoteMapsZero)
        {
            throw new InvalidOperationException(
                $"zero-page probe: CPU loads {(loadsMapZero ? "map" : "do not map")} the zero page but process_vm_readv {(remoteMapsZero ? "does" : "does not")}");
        }

        pagemapShowsZeroPage = ZeroPageByPagemap(loaded, remote);
        if (pagemapShowsZeroPage is { } byPagemap && byPagemap != loadsMapZero)
        {
            throw new InvalidOperationException($"zero-page probe: smaps Rss says {loadsMapZero}, pagemap PFNs say {byPagemap}");
        }

        return loadsMapZero;
    }

    /// <summary>
    /// Tries <c>mmap(0, PAGE_SIZE, PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_FIXED_NOREPLACE)</c> and unmaps the
    /// page at once if it was mapped. PROT_NONE keeps a null dereference faulting during that instant, and
    /// MAP_FIXED_NOREPLACE never replaces anything already there.
    /// </summary>
    /// <returns>0 when page 0 could be mapped, otherwise the errno (EPERM below <c>vm.mmap_min_addr</c>).</returns>
    public static int ProbeFixedMapOfPageZero()
    {
        int error = LibC.MmapErrno(0, Linux.PAGE_SIZE, Linux.PROT_NONE,
            Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_NORESERVE | Linux.MAP_FIXED_NOREPLACE, -1, 0, out ulong mapped);
        if (error == 0 && mapped == 0)
        {
            Require(LibC.MunmapErrno(0, Linux.PAGE_SIZE), "munmap of page 0");
        }
        else if (error == 0)
        {
            // A kernel that ignores MAP_FIXED_NOREPLACE placed the page elsewhere: page 0 was not mapped.
            Require(LibC.MunmapErrno(mapped, Linux.PAGE_SIZE), "munmap of the misplaced probe page");
            error = Errno.EEXIST;
        }

        return error;
    }

    /// <summary>
    /// Measures <c>fault_around_pages</c>: fills a page table's worth (2 MiB, table-aligned) of shared anonymous memory,
    /// drops its PTEs with <c>MADV_DONTNEED</c> (the pages stay in the shmem object), reads the table's first page and
    /// counts the pages pagemap then shows present: the aligned window <c>do_fault_around</c> mapped.
    /// </summary>
    /// <returns>The window in pages (1 when the kernel maps no page around a fault).</returns>
    /// <exception cref="InvalidOperationException">A call failed, or the count is not a power of two.</exception>
    public static unsafe int ProbeFaultAroundPages()
    {
        const ulong table = 512 * Linux.PAGE_SIZE;
        Require(LibC.MmapErrno(0, 2 * table, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_SHARED | Linux.MAP_ANONYMOUS, -1, 0, out ulong mapped),
            "mmap of the fault-around probe");
        try
        {
            ulong start = (mapped + table - 1) & ~(table - 1);
            for (ulong page = start; page < start + table; page += Linux.PAGE_SIZE)
            {
                // Volatile only so the stores are not elided: each fills one page of the object.
                Volatile.Write(ref *(byte*)page, 1);
            }

            Require(LibC.MadviseErrno(start, table, Linux.MADV_DONTNEED), "madvise(MADV_DONTNEED) of the fault-around probe");
            _ = Volatile.Read(ref *(byte*)start);
            Span<ulong> entries = stackalloc ulong[512];
            HostPagemap.ReadEntries(start, entries);
            int present = 0;
            foreach (ulong entry in entries)
            {
                present += (entry & HostPagemap.PM_PRESENT) != 0 ? 1 : 0;
            }

            if (present == 0 || (present & (present - 1)) != 0 || !AllPresent(entries[..present]))
            {
                throw new InvalidOperationException($"fault-around probe: {present} pages present, not a window at the faulting page");
            }

            return present;
        }
        finally
        {
            Require(LibC.MunmapErrno(mapped, 2 * table), "munmap of the fault-around probe");
        }
    }

    private static bool AllPresent(ReadOnlySpan<ulong> entries)
    {
        foreach (ulong entry in entries)
        {
            if ((entry & HostPagemap.PM_PRESENT) == 0)
            {
                return false;
            }
        }

        return true;
    }

    private static HostFacts Probe()
    {
        bool zeroPage = ProbeReadFaultZeroPage(out bool? pagemapShowsZeroPage);
        return new HostFacts(zeroPage, pagemapShowsZeroPage, ReadMmapMinAddress(), ReadEffectiveCapabilities(),
            ProbeFixedMapOfPageZero(), ReadTransparentHugePages(), ReadMemoryLockLimit(), ProbeFaultAroundPages());
    }

    // smaps Rss of the one VMA [start, start + length): 0 → zero page, every page counted → private pages.
    private static bool ZeroPageByRss(ulong start, ulong length, string how)
    {
        SmapsEntry entry = HostSmaps.ReadRegion(start, start + length).Single();
        if (entry.Start != start || entry.End != start + length)
        {
            throw new InvalidOperationException($"zero-page probe: the {how} group merged into VMA {entry.Start:x}-{entry.End:x}");
        }

        if (entry.RssKb != 0 && entry.RssKb != length / 1024)
        {
            throw new InvalidOperationException($"zero-page probe: {how} of {length / 1024} kB left Rss {entry.RssKb} kB");
        }

        return entry.RssKb == 0;
    }

    // One PFN for every read page means the zero page; null when pagemap hides PFNs (no CAP_SYS_ADMIN).
    private static bool? ZeroPageByPagemap(ulong loaded, ulong remote)
    {
        Span<ulong> entries = stackalloc ulong[2 * ZeroPageProbePages];
        HostPagemap.ReadEntries(loaded, entries[..ZeroPageProbePages]);
        HostPagemap.ReadEntries(remote, entries[ZeroPageProbePages..]);
        ulong first = entries[0] & HostPagemap.PM_PFN_MASK;
        if (first == 0)
        {
            return null;
        }

        bool allSame = true;
        foreach (ulong entry in entries)
        {
            allSame &= (entry & HostPagemap.PM_PFN_MASK) == first;
        }

        return allSame;
    }

    private static ulong ReadMmapMinAddress() =>
        ulong.Parse(File.ReadAllText("/proc/sys/vm/mmap_min_addr").Trim(), CultureInfo.InvariantCulture);

    private static ulong ReadEffectiveCapabilities()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("CapEff:", StringComparison.Ordinal))
            {
                return ulong.Parse(line["CapEff:".Length..].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException("/proc/self/status has no CapEff line");
    }

    private static ulong ReadMemoryLockLimit()
    {
        foreach (string line in File.ReadLines("/proc/self/limits"))
        {
            if (line.StartsWith("Max locked memory", StringComparison.Ordinal))
            {
                string soft = line["Max locked memory".Length..].Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries)[0];
                return soft == "unlimited" ? ulong.MaxValue : ulong.Parse(soft, CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException("/proc/self/limits has no Max locked memory line");
    }

    // "always [madvise] never": the bracketed word is the one in force.
    private static string ReadTransparentHugePages()
    {
        const string path = "/sys/kernel/mm/transparent_hugepage/enabled";
        if (!File.Exists(path))
        {
            return "unavailable";
        }

        string text = File.ReadAllText(path);
        int open = text.IndexOf('['), close = text.IndexOf(']');
        return open >= 0 && close > open ? text[(open + 1)..close] : text.Trim();
    }

    private static void Require(int error, string what)
    {
        if (error != 0)
        {
            throw new InvalidOperationException($"{what} failed: {Errno.Name(error)}");
        }
    }
}
