using Faultline.VmStat;

namespace Faultline;

/// <summary>
/// The counters of <see cref="AddressSpace.GetCounters"/>, by name, with what the kernel means by each. Every counter
/// is also a Metrics instrument (<see cref="FaultlineMeter"/>) named <c>faultline.vmstat.</c> and the counter's name.
/// </summary>
/// <remarks>
/// The names follow <c>/proc/vmstat</c> where the kernel has the counter (<c>pgfault</c>, <c>vma_lock_*</c>,
/// <c>nr_anon_pages</c>) and the SPF series' event names for the speculative path (<c>spf_*</c>). New counters are
/// added to <see cref="All"/>; a name once published keeps its meaning. Static and immutable: safe from any thread.
/// </remarks>
public static class VmCounters
{
    /// <summary><c>pgfault</c>: Page faults raised by Cpus, whatever their end (/proc/vmstat pgfault).</summary>
    public const string PageFault = "pgfault";

    /// <summary><c>fault_handled</c>: Faults that ended with the page mapped (handle_mm_fault returned without VM_FAULT_ERROR).</summary>
    public const string FaultHandled = "fault_handled";

    /// <summary><c>anon_fault</c>: Anonymous pages allocated by a fault (do_anonymous_page).</summary>
    public const string AnonymousFault = "anon_fault";

    /// <summary><c>zero_page_fault</c>: Read faults that mapped the shared zero page (do_anonymous_page's read case).</summary>
    public const string ZeroPageFault = "zero_page_fault";

    /// <summary><c>wp_fault</c>: Write faults on a present read-only PTE (do_wp_page), by copy or reuse.</summary>
    public const string WriteProtectFault = "wp_fault";

    /// <summary><c>cow_fault</c>: Copy-on-write faults that copied: a write to a frame shared by fork, or to the zero page, gave the mapping its own copy (wp_page_copy).</summary>
    public const string CowFault = "cow_fault";

    /// <summary><c>cow_reuse</c>: Write-protect faults that reused an anonymous frame in place: the writer was its only user (wp_page_reuse).</summary>
    public const string CowReuse = "cow_reuse";

    /// <summary><c>fork</c>: Address spaces forked (dup_mmap).</summary>
    public const string Fork = "fork";

    /// <summary><c>fault_race_lost</c>: Faults that found the PTE already set by another thread (a spurious fault or a lost race).</summary>
    public const string FaultRaceLost = "fault_race_lost";

    /// <summary><c>segv_maperr</c>: Faults that ended in SIGSEGV with SEGV_MAPERR: no VMA at the address.</summary>
    public const string SegvMapErr = "segv_maperr";

    /// <summary><c>segv_accerr</c>: Faults that ended in SIGSEGV with SEGV_ACCERR: the VMA does not permit the access (access_error).</summary>
    public const string SegvAccErr = "segv_accerr";

    /// <summary><c>oom</c>: Faults that ended in VM_FAULT_OOM: guest physical memory was exhausted.</summary>
    public const string OutOfMemory = "oom";

    /// <summary><c>mmap_lock_fault</c>: Faults handled on the classic path, under the mmap lock held for read (lock_mm_and_find_vma).</summary>
    public const string MmapLockFault = "mmap_lock_fault";

    /// <summary><c>mmap_lock_retry</c>: Classic-path retries (VM_FAULT_RETRY, then FAULT_FLAG_TRIED).</summary>
    public const string MmapLockRetry = "mmap_lock_retry";

    /// <summary><c>vma_lock_success</c>: Faults handled under the per-VMA lock alone (/proc/vmstat vma_lock_success).</summary>
    public const string VmaLockSuccess = "vma_lock_success";

    /// <summary><c>vma_lock_abort</c>: Per-VMA-lock attempts that gave up and fell back to the mmap lock (/proc/vmstat vma_lock_abort).</summary>
    public const string VmaLockAbort = "vma_lock_abort";

    /// <summary><c>vma_lock_retry</c>: Faults under the per-VMA lock that returned VM_FAULT_RETRY (/proc/vmstat vma_lock_retry).</summary>
    public const string VmaLockRetry = "vma_lock_retry";

    /// <summary><c>vma_lock_miss</c>: lock_vma_under_rcu found the VMA detached or replaced and looked again (/proc/vmstat vma_lock_miss).</summary>
    public const string VmaLockMiss = "vma_lock_miss";

    /// <summary><c>speculative_pgfault</c>: Faults completed speculatively, without the mmap lock (the SPF series' /proc/vmstat speculative_pgfault).</summary>
    public const string SpeculativePageFault = "speculative_pgfault";

    /// <summary><c>spf_single_user</c>: Speculative attempts skipped because one Cpu is attached (mm_users == 1).</summary>
    public const string SpeculativeSingleUser = "spf_single_user";

    /// <summary><c>spf_vma_notsup</c>: The VMA cannot be handled speculatively: a backing, no anon_vma, userfault, a policy, grows-down (the SPF series' spf_vma_notsup).</summary>
    public const string SpeculativeVmaNotSupported = "spf_vma_notsup";

    /// <summary><c>spf_vma_changed</c>: The VMA's sequence count was odd or moved, or the VMA was detached (spf_vma_changed).</summary>
    public const string SpeculativeVmaChanged = "spf_vma_changed";

    /// <summary><c>spf_vma_novma</c>: The lockless lookup found no VMA; the classic path decides.</summary>
    public const string SpeculativeNoVma = "spf_vma_novma";

    /// <summary><c>spf_vma_access</c>: An access error on the validated VMA snapshot: SIGSEGV from the speculative path (spf_vma_access).</summary>
    public const string SpeculativeVmaAccess = "spf_vma_access";

    /// <summary><c>spf_pmd_changed</c>: An upper page-table level was none, bad, huge or changed (spf_pmd_changed).</summary>
    public const string SpeculativePmdChanged = "spf_pmd_changed";

    /// <summary><c>spf_pte_lock</c>: The PTE lock could not be taken with the VMA unchanged (spf_pte_lock).</summary>
    public const string SpeculativePteLock = "spf_pte_lock";

    /// <summary><c>spf_trylock_retry</c>: PTE-lock trylock failures retried inside the speculative path.</summary>
    public const string SpeculativeTrylockRetry = "spf_trylock_retry";

    /// <summary><c>spf_table_alloc</c>: Page-table pages allocated speculatively (FaultlineOptions.SpeculativePageTableAllocation).</summary>
    public const string SpeculativeTableAlloc = "spf_table_alloc";

    /// <summary><c>spf_fallback</c>: Speculative attempts that returned VM_FAULT_RETRY and were handed to the classic path.</summary>
    public const string SpeculativeFallback = "spf_fallback";

    /// <summary><c>tlb_fill</c>: Software TLB fills after a successful page-table walk.</summary>
    public const string TlbFill = "tlb_fill";

    /// <summary><c>tlb_flush</c>: Full software TLB flushes after a shootdown (the TLB generation moved).</summary>
    public const string TlbFlush = "tlb_flush";

    /// <summary><c>tlb_range_flush</c>: Shootdowns handled by invalidating only the pages of the missed generations.</summary>
    public const string TlbRangeFlush = "tlb_range_flush";

    /// <summary><c>tlb_huge_fill</c>: Software TLB fills from the Cpu's cached 2 MiB translations (FaultlineOptions.HugeTlbEntries), without a page-table walk.</summary>
    public const string TlbHugeFill = "tlb_huge_fill";

    /// <summary><c>mmap</c>: mmap calls (AddressSpace.Map and TryMap), successful or not.</summary>
    public const string MmapCalls = "mmap";

    /// <summary><c>munmap</c>: munmap calls (AddressSpace.Unmap and TryUnmap), successful or not.</summary>
    public const string MunmapCalls = "munmap";

    /// <summary><c>mprotect</c>: mprotect calls (AddressSpace.Protect and TryProtect), successful or not.</summary>
    public const string MprotectCalls = "mprotect";

    /// <summary><c>grace_period</c>: Grace periods writers waited for (synchronize_rcu, the TLB shootdown's wait).</summary>
    public const string GracePeriod = "grace_period";

    /// <summary><c>grace_period_reader_wait</c>: Cpus a grace period found inside an older read section and waited for.</summary>
    public const string GracePeriodReaderWait = "grace_period_reader_wait";

    /// <summary><c>nr_anon_pages</c>: Resident anonymous pages now (MM_ANONPAGES; /proc/vmstat nr_anon_pages): a level, not a count of events.</summary>
    public const string AnonPages = "nr_anon_pages";

    /// <summary><c>rss_shmem</c>: Resident shared-memory pages mapped now (MM_SHMEMPAGES; /proc/pid/status RssShmem): a level, not a count of events.</summary>
    public const string ShmemPages = "rss_shmem";

    /// <summary><c>thp_fault_alloc</c>: Huge pages a fault allocated and mapped with one PMD (/proc/vmstat thp_fault_alloc).</summary>
    public const string ThpFaultAlloc = "thp_fault_alloc";

    /// <summary><c>thp_fault_fallback</c>: Huge faults that found no free huge block and fell back to 4 KiB pages (/proc/vmstat thp_fault_fallback).</summary>
    public const string ThpFaultFallback = "thp_fault_fallback";

    /// <summary><c>thp_split_pmd</c>: Huge PMDs split into 512 PTEs (/proc/vmstat thp_split_pmd).</summary>
    public const string ThpSplitPmd = "thp_split_pmd";

    /// <summary><c>thp_zero_page_alloc</c>: Huge zero pages allocated (/proc/vmstat thp_zero_page_alloc).</summary>
    public const string ThpZeroPageAlloc = "thp_zero_page_alloc";
    /// <summary><c>pswpin</c>: Pages read in from a swap area (/proc/vmstat pswpin).</summary>
    public const string SwapIn = "pswpin";

    /// <summary><c>pswpout</c>: Pages written out to a swap area (/proc/vmstat pswpout).</summary>
    public const string SwapOut = "pswpout";

    /// <summary><c>swap_ra</c>: Pages swap readahead read into the swap cache beside a faulting page (/proc/vmstat swap_ra).</summary>
    public const string SwapReadahead = "swap_ra";

    /// <summary><c>swap_ra_hit</c>: Pages read ahead that a fault then found in the swap cache (/proc/vmstat swap_ra_hit).</summary>
    public const string SwapReadaheadHit = "swap_ra_hit";

    /// <summary><c>pgmajfault</c>: Faults that had to read the page from a swap area (/proc/vmstat pgmajfault).</summary>
    public const string MajorFault = "pgmajfault";

    /// <summary><c>pgscan_kswapd</c>: Pages the background reclaimer looked at on the inactive list (/proc/vmstat pgscan_kswapd).</summary>
    public const string ScanKswapd = "pgscan_kswapd";

    /// <summary><c>pgscan_direct</c>: Pages direct reclaim looked at on the inactive list, for an allocation that failed (/proc/vmstat pgscan_direct).</summary>
    public const string ScanDirect = "pgscan_direct";

    /// <summary><c>pgsteal_kswapd</c>: Pages the background reclaimer freed (/proc/vmstat pgsteal_kswapd).</summary>
    public const string StealKswapd = "pgsteal_kswapd";

    /// <summary><c>pgsteal_direct</c>: Pages direct reclaim freed (/proc/vmstat pgsteal_direct).</summary>
    public const string StealDirect = "pgsteal_direct";

    /// <summary><c>pgactivate</c>: Pages moved to the active list: referenced when reclaim looked at them (/proc/vmstat pgactivate).</summary>
    public const string Activate = "pgactivate";

    /// <summary><c>pgdeactivate</c>: Pages moved from the active to the inactive list (/proc/vmstat pgdeactivate).</summary>
    public const string Deactivate = "pgdeactivate";

    /// <summary><c>pglazyfreed</c>: MADV_FREE pages reclaim discarded because they stayed clean (/proc/vmstat pglazyfreed).</summary>
    public const string LazyFreed = "pglazyfreed";

    /// <summary><c>allocstall</c>: Faults that found no free frame and ran direct reclaim (/proc/vmstat allocstall_*).</summary>
    public const string AllocStall = "allocstall";

    /// <summary><c>pageoutrun</c>: Background reclaimer runs (/proc/vmstat pageoutrun).</summary>
    public const string KswapdRun = "pageoutrun";

    /// <summary><c>swap_write_failed</c>: Page-outs whose write failed: the page stayed in memory, dirty (end_swap_bio_write's redirty).</summary>
    public const string SwapWriteFailed = "swap_write_failed";

    /// <summary><c>thp_collapse_alloc</c>: Huge pages a collapse allocated and mapped in place of 512 PTEs (/proc/vmstat thp_collapse_alloc).</summary>
    public const string ThpCollapseAlloc = "thp_collapse_alloc";

    /// <summary><c>thp_collapse_alloc_failed</c>: Collapses that found no free huge block (/proc/vmstat thp_collapse_alloc_failed).</summary>
    public const string ThpCollapseAllocFailed = "thp_collapse_alloc_failed";

    /// <summary><c>oom_kill</c>: Accesses failed as a memory group's OOM victim, its reclaim and OOM handler having made no room (/proc/vmstat oom_kill).</summary>
    public const string OomKill = "oom_kill";

    /// <summary><c>spf_memcg_charge</c>: Speculative faults whose memory-group charge failed; the classic path charged again and decided.</summary>
    public const string SpeculativeMemcgCharge = "spf_memcg_charge";

    /// <summary>Every counter, in a fixed order: its name, unit, kind and meaning.</summary>
    public static IReadOnlyList<VmCounterInfo> All => EventNames.All;
}
