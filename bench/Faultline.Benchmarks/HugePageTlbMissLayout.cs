namespace Faultline.Benchmarks;

/// <summary>What <see cref="HugePageTlbMissBenchmarks"/> loads from.</summary>
public enum HugePageTlbMissLayout
{
    /// <summary>Faultline, 4 KiB pages (<c>MADV_NOHUGEPAGE</c>): every miss walks to a PTE.</summary>
    SmallPages,
    /// <summary>Faultline, 2 MiB pages (<c>MADV_HUGEPAGE</c>), no 2 MiB cache: every miss walks to the PMD leaf.</summary>
    HugePages,
    /// <summary>Faultline, 2 MiB pages with the per-Cpu 2 MiB cache (<see cref="FaultlineOptions.HugeTlbEntries"/> 512).</summary>
    HugePagesCached,
    /// <summary>Raw loads over host memory of 4 KiB pages: the hardware TLB misses (the floor of a miss).</summary>
    Host,
    /// <summary>Raw loads, the same loop, within 32 KiB of host memory: the cached raw load.</summary>
    HostCached,
    /// <summary>
    /// Raw loads of the same pages in the same order, each address read from the page before (a pointer chase): the
    /// hardware TLB and cache misses one at a time, as a walk's dependent loads take them.
    /// </summary>
    HostChase,
}
