namespace Faultline.VmStat;

/// <summary>
/// Counted events, named as the kernel names them where it does (vmstat's <c>vma_lock_*</c>, the SPF trace events
/// <c>spf_*</c>, <c>pgfault</c>). <see cref="EventNames"/> gives the printed names.
/// </summary>
internal enum VmEvent
{
    /// <summary><c>pgfault</c>: faults raised by Cpus.</summary>
    PageFault,
    /// <summary>Faults that ended with the page mapped.</summary>
    FaultHandled,
    /// <summary>Anonymous pages allocated on a fault (<c>do_anonymous_page</c>).</summary>
    AnonymousFault,
    /// <summary>Read faults that mapped the zero frame.</summary>
    ZeroPageFault,
    /// <summary>Write faults on a read-only PTE (<c>do_wp_page</c>), copy or reuse.</summary>
    WriteProtectFault,
    /// <summary><c>wp_page_copy</c>: a write to a shared (forked) or zero frame gave the mapping its own copy.</summary>
    CowFault,
    /// <summary><c>wp_page_reuse</c> of an anonymous frame: the writer was its only user, so it became writable in place.</summary>
    CowReuse,
    /// <summary>Address spaces forked (<c>dup_mmap</c>).</summary>
    Fork,
    /// <summary>Faults that found the PTE already done by another thread (spurious or lost race).</summary>
    FaultRaceLost,
    /// <summary>Faults that ended in SIGSEGV (no VMA).</summary>
    SegvMapErr,
    /// <summary>Faults that ended in SIGSEGV (access not permitted).</summary>
    SegvAccErr,
    /// <summary>Faults that ended in out-of-memory.</summary>
    OutOfMemory,
    /// <summary>Faults handled on the classic path (mmap_lock held).</summary>
    ClassicFault,
    /// <summary>Classic-path RETRY loops (<c>FAULT_FLAG_TRIED</c>).</summary>
    ClassicRetry,
    /// <summary><c>VMA_LOCK_SUCCESS</c>.</summary>
    VmaLockSuccess,
    /// <summary><c>VMA_LOCK_ABORT</c>.</summary>
    VmaLockAbort,
    /// <summary><c>VMA_LOCK_RETRY</c>.</summary>
    VmaLockRetry,
    /// <summary><c>VMA_LOCK_MISS</c>.</summary>
    VmaLockMiss,
    /// <summary>Speculative faults that completed without the mmap lock.</summary>
    SpeculativeSuccess,
    /// <summary>Speculative attempts skipped: a single attached Cpu (<c>mm_users == 1</c>).</summary>
    SpeculativeSingleUser,
    /// <summary><c>spf_vma_notsup</c>: the VMA cannot be handled speculatively (backing, anon_vma, userfault, policy, grows).</summary>
    SpeculativeVmaNotSupported,
    /// <summary><c>spf_vma_changed</c>: sequence odd or moved, VMA detached.</summary>
    SpeculativeVmaChanged,
    /// <summary>No VMA found by the lockless lookup.</summary>
    SpeculativeNoVma,
    /// <summary><c>spf_vma_access</c>: access error on the snapshot (SIGSEGV).</summary>
    SpeculativeVmaAccess,
    /// <summary><c>spf_pmd_changed</c>: upper levels none, bad, huge or changed.</summary>
    SpeculativePmdChanged,
    /// <summary><c>spf_pte_lock</c>: PTE lock could not be taken with the VMA unchanged.</summary>
    SpeculativePteLock,
    /// <summary>PTE-lock trylock failures retried inside the speculative path.</summary>
    SpeculativeTrylockRetry,
    /// <summary>Page-table pages allocated speculatively.</summary>
    SpeculativeTableAlloc,
    /// <summary>Speculative RETRY handed to the classic path.</summary>
    SpeculativeFallback,
    /// <summary>Software TLB fills after a successful walk.</summary>
    TlbFill,
    /// <summary>Software TLB full flushes after a shootdown.</summary>
    TlbFlush,
    /// <summary>Shootdowns handled by invalidating only the pages of the missed bumps.</summary>
    TlbRangeFlush,
    /// <summary>Software TLB fills from the Cpu's cached 2 MiB translations, without a walk.</summary>
    TlbHugeFill,
    /// <summary>Map operations.</summary>
    MapCall,
    /// <summary>Unmap operations.</summary>
    UnmapCall,
    /// <summary>Protect operations.</summary>
    ProtectCall,
    /// <summary>Grace periods waited for by writers.</summary>
    GracePeriod,
    /// <summary>Readers a grace period found inside an older section and waited for.</summary>
    GracePeriodReaderWait,
    /// <summary>
    /// <c>MM_ANONPAGES</c> deltas: faults add on their Cpu, unmaps subtract on the shared counters, so the fault path
    /// never writes a shared cache line for accounting (the kernel's split RSS counters).
    /// </summary>
    AnonPages,
    /// <summary>
    /// <c>MM_SHMEMPAGES</c> deltas (/proc/pid/status <c>RssShmem</c>): shared-memory pages mapped, split like
    /// <see cref="AnonPages"/>.
    /// </summary>
    ShmemPages,
    /// <summary><c>thp_fault_alloc</c>: huge pages a fault allocated and mapped with one PMD.</summary>
    ThpFaultAlloc,
    /// <summary><c>thp_fault_fallback</c>: huge faults that found no free huge block and fell back to 4 KiB pages.</summary>
    ThpFaultFallback,
    /// <summary><c>thp_split_pmd</c>: huge PMDs replaced by a table of 512 PTEs.</summary>
    ThpSplitPmd,
    /// <summary><c>thp_zero_page_alloc</c>: huge zero pages allocated.</summary>
    ThpZeroPageAlloc,
    /// <summary><c>pswpin</c>: Pages read in from a swap area (/proc/vmstat pswpin).</summary>
    SwapIn,
    /// <summary><c>pswpout</c>: Pages written out to a swap area (/proc/vmstat pswpout).</summary>
    SwapOut,
    /// <summary><c>pgmajfault</c>: Faults that had to read the page from a swap area (/proc/vmstat pgmajfault).</summary>
    MajorFault,
    /// <summary><c>pgscan_kswapd</c>: Pages the background reclaimer looked at on the inactive list (/proc/vmstat pgscan_kswapd).</summary>
    ScanKswapd,
    /// <summary><c>pgscan_direct</c>: Pages direct reclaim looked at on the inactive list, for an allocation that failed (/proc/vmstat pgscan_direct).</summary>
    ScanDirect,
    /// <summary><c>pgsteal_kswapd</c>: Pages the background reclaimer freed (/proc/vmstat pgsteal_kswapd).</summary>
    StealKswapd,
    /// <summary><c>pgsteal_direct</c>: Pages direct reclaim freed (/proc/vmstat pgsteal_direct).</summary>
    StealDirect,
    /// <summary><c>pgactivate</c>: Pages moved to the active list: referenced when reclaim looked at them (/proc/vmstat pgactivate).</summary>
    Activate,
    /// <summary><c>pgdeactivate</c>: Pages moved from the active to the inactive list (/proc/vmstat pgdeactivate).</summary>
    Deactivate,
    /// <summary><c>pglazyfreed</c>: MADV_FREE pages reclaim discarded because they stayed clean (/proc/vmstat pglazyfreed).</summary>
    LazyFreed,
    /// <summary><c>allocstall</c>: Faults that found no free frame and ran direct reclaim (/proc/vmstat allocstall_*).</summary>
    AllocStall,
    /// <summary><c>pageoutrun</c>: Background reclaimer runs (/proc/vmstat pageoutrun).</summary>
    KswapdRun,
    /// <summary><c>swap_write_failed</c>: Page-outs whose write failed: the page stayed in memory, dirty (end_swap_bio_write's redirty).</summary>
    SwapWriteFailed,
    /// <summary><c>thp_collapse_alloc</c>: Huge pages a collapse allocated and mapped in place of 512 PTEs (/proc/vmstat thp_collapse_alloc).</summary>
    ThpCollapseAlloc,
    /// <summary><c>thp_collapse_alloc_failed</c>: Collapses that found no free huge block (/proc/vmstat thp_collapse_alloc_failed).</summary>
    ThpCollapseAllocFailed,
    /// <summary><c>swap_ra</c>: Pages swap readahead read into the swap cache beside a faulting page (/proc/vmstat swap_ra).</summary>
    SwapReadahead,
    /// <summary><c>swap_ra_hit</c>: Pages read ahead that a fault then found in the swap cache (/proc/vmstat swap_ra_hit).</summary>
    SwapReadaheadHit,
    /// <summary><c>oom_kill</c>: Accesses failed as a memory group's OOM victim (/proc/vmstat oom_kill).</summary>
    OomKill,
    /// <summary>Speculative faults whose memory-group charge failed and that were handed to the classic path.</summary>
    SpeculativeMemcgCharge,
}
