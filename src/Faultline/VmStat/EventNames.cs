namespace Faultline.VmStat;

/// <summary>
/// The table of counted events: each <see cref="VmEvent"/> with its public counter (name, unit, kind, meaning). A new
/// event is one enum member, one <see cref="VmCounters"/> constant and one row here; an event without a row fails the
/// type's initialization, so it cannot ship unnamed.
/// </summary>
internal static class EventNames
{
    private static readonly (VmEvent Event, VmCounterInfo Counter)[] s_table =
    [
        (VmEvent.PageFault, new(VmCounters.PageFault, "{fault}", VmCounterKind.Counter, "Page faults raised by Cpus, whatever their end (/proc/vmstat pgfault).")),
        (VmEvent.FaultHandled, new(VmCounters.FaultHandled, "{fault}", VmCounterKind.Counter, "Faults that ended with the page mapped (handle_mm_fault returned without VM_FAULT_ERROR).")),
        (VmEvent.AnonymousFault, new(VmCounters.AnonymousFault, "{fault}", VmCounterKind.Counter, "Anonymous pages allocated by a fault (do_anonymous_page).")),
        (VmEvent.ZeroPageFault, new(VmCounters.ZeroPageFault, "{fault}", VmCounterKind.Counter, "Read faults that mapped the shared zero page (do_anonymous_page's read case).")),
        (VmEvent.WriteProtectFault, new(VmCounters.WriteProtectFault, "{fault}", VmCounterKind.Counter, "Write faults on a present read-only PTE (do_wp_page), by copy or reuse.")),
        (VmEvent.CowFault, new(VmCounters.CowFault, "{fault}", VmCounterKind.Counter, "Copy-on-write faults that copied: a write to a frame shared by fork, or to the zero page, gave the mapping its own copy (wp_page_copy).")),
        (VmEvent.CowReuse, new(VmCounters.CowReuse, "{fault}", VmCounterKind.Counter, "Write-protect faults that reused an anonymous frame in place: the writer was its only user (wp_page_reuse).")),
        (VmEvent.Fork, new(VmCounters.Fork, "{call}", VmCounterKind.Counter, "Address spaces forked (dup_mmap).")),
        (VmEvent.FaultRaceLost, new(VmCounters.FaultRaceLost, "{fault}", VmCounterKind.Counter, "Faults that found the PTE already set by another thread (a spurious fault or a lost race).")),
        (VmEvent.SegvMapErr, new(VmCounters.SegvMapErr, "{fault}", VmCounterKind.Counter, "Faults that ended in SIGSEGV with SEGV_MAPERR: no VMA at the address.")),
        (VmEvent.SegvAccErr, new(VmCounters.SegvAccErr, "{fault}", VmCounterKind.Counter, "Faults that ended in SIGSEGV with SEGV_ACCERR: the VMA does not permit the access (access_error).")),
        (VmEvent.OutOfMemory, new(VmCounters.OutOfMemory, "{fault}", VmCounterKind.Counter, "Faults that ended in VM_FAULT_OOM: guest physical memory was exhausted.")),
        (VmEvent.ClassicFault, new(VmCounters.MmapLockFault, "{fault}", VmCounterKind.Counter, "Faults handled on the classic path, under the mmap lock held for read (lock_mm_and_find_vma).")),
        (VmEvent.ClassicRetry, new(VmCounters.MmapLockRetry, "{retry}", VmCounterKind.Counter, "Classic-path retries (VM_FAULT_RETRY, then FAULT_FLAG_TRIED).")),
        (VmEvent.VmaLockSuccess, new(VmCounters.VmaLockSuccess, "{fault}", VmCounterKind.Counter, "Faults handled under the per-VMA lock alone (/proc/vmstat vma_lock_success).")),
        (VmEvent.VmaLockAbort, new(VmCounters.VmaLockAbort, "{fault}", VmCounterKind.Counter, "Per-VMA-lock attempts that gave up and fell back to the mmap lock (/proc/vmstat vma_lock_abort).")),
        (VmEvent.VmaLockRetry, new(VmCounters.VmaLockRetry, "{fault}", VmCounterKind.Counter, "Faults under the per-VMA lock that returned VM_FAULT_RETRY (/proc/vmstat vma_lock_retry).")),
        (VmEvent.VmaLockMiss, new(VmCounters.VmaLockMiss, "{fault}", VmCounterKind.Counter, "lock_vma_under_rcu found the VMA detached or replaced and looked again (/proc/vmstat vma_lock_miss).")),
        (VmEvent.SpeculativeSuccess, new(VmCounters.SpeculativePageFault, "{fault}", VmCounterKind.Counter, "Faults completed speculatively, without the mmap lock (the SPF series' /proc/vmstat speculative_pgfault).")),
        (VmEvent.SpeculativeSingleUser, new(VmCounters.SpeculativeSingleUser, "{fault}", VmCounterKind.Counter, "Speculative attempts skipped because one Cpu is attached (mm_users == 1).")),
        (VmEvent.SpeculativeVmaNotSupported, new(VmCounters.SpeculativeVmaNotSupported, "{fault}", VmCounterKind.Counter, "The VMA cannot be handled speculatively: a backing, no anon_vma, userfault, a policy, grows-down (the SPF series' spf_vma_notsup).")),
        (VmEvent.SpeculativeVmaChanged, new(VmCounters.SpeculativeVmaChanged, "{fault}", VmCounterKind.Counter, "The VMA's sequence count was odd or moved, or the VMA was detached (spf_vma_changed).")),
        (VmEvent.SpeculativeNoVma, new(VmCounters.SpeculativeNoVma, "{fault}", VmCounterKind.Counter, "The lockless lookup found no VMA; the classic path decides.")),
        (VmEvent.SpeculativeVmaAccess, new(VmCounters.SpeculativeVmaAccess, "{fault}", VmCounterKind.Counter, "An access error on the validated VMA snapshot: SIGSEGV from the speculative path (spf_vma_access).")),
        (VmEvent.SpeculativePmdChanged, new(VmCounters.SpeculativePmdChanged, "{fault}", VmCounterKind.Counter, "An upper page-table level was none, bad, huge or changed (spf_pmd_changed).")),
        (VmEvent.SpeculativePteLock, new(VmCounters.SpeculativePteLock, "{fault}", VmCounterKind.Counter, "The PTE lock could not be taken with the VMA unchanged (spf_pte_lock).")),
        (VmEvent.SpeculativeTrylockRetry, new(VmCounters.SpeculativeTrylockRetry, "{retry}", VmCounterKind.Counter, "PTE-lock trylock failures retried inside the speculative path.")),
        (VmEvent.SpeculativeTableAlloc, new(VmCounters.SpeculativeTableAlloc, "{page}", VmCounterKind.Counter, "Page-table pages allocated speculatively (FaultlineOptions.SpeculativePageTableAllocation).")),
        (VmEvent.SpeculativeFallback, new(VmCounters.SpeculativeFallback, "{fault}", VmCounterKind.Counter, "Speculative attempts that returned VM_FAULT_RETRY and were handed to the classic path.")),
        (VmEvent.TlbFill, new(VmCounters.TlbFill, "{fill}", VmCounterKind.Counter, "Software TLB fills after a successful page-table walk.")),
        (VmEvent.TlbFlush, new(VmCounters.TlbFlush, "{flush}", VmCounterKind.Counter, "Full software TLB flushes after a shootdown (the TLB generation moved).")),
        (VmEvent.TlbRangeFlush, new(VmCounters.TlbRangeFlush, "{flush}", VmCounterKind.Counter, "Shootdowns handled by invalidating only the pages of the missed generations.")),
        (VmEvent.TlbHugeFill, new(VmCounters.TlbHugeFill, "{fill}", VmCounterKind.Counter, "Software TLB fills from the Cpu's cached 2 MiB translations (FaultlineOptions.HugeTlbEntries), without a page-table walk.")),
        (VmEvent.MapCall, new(VmCounters.MmapCalls, "{call}", VmCounterKind.Counter, "mmap calls (AddressSpace.Map and TryMap), successful or not.")),
        (VmEvent.UnmapCall, new(VmCounters.MunmapCalls, "{call}", VmCounterKind.Counter, "munmap calls (AddressSpace.Unmap and TryUnmap), successful or not.")),
        (VmEvent.ProtectCall, new(VmCounters.MprotectCalls, "{call}", VmCounterKind.Counter, "mprotect calls (AddressSpace.Protect and TryProtect), successful or not.")),
        (VmEvent.GracePeriod, new(VmCounters.GracePeriod, "{grace_period}", VmCounterKind.Counter, "Grace periods writers waited for (synchronize_rcu, the TLB shootdown's wait).")),
        (VmEvent.GracePeriodReaderWait, new(VmCounters.GracePeriodReaderWait, "{reader}", VmCounterKind.Counter, "Cpus a grace period found inside an older read section and waited for.")),
        (VmEvent.AnonPages, new(VmCounters.AnonPages, "{page}", VmCounterKind.Level, "Resident anonymous pages now (MM_ANONPAGES; /proc/vmstat nr_anon_pages): a level, not a count of events.")),
        (VmEvent.ShmemPages, new(VmCounters.ShmemPages, "{page}", VmCounterKind.Level, "Resident shared-memory pages mapped now (MM_SHMEMPAGES; /proc/pid/status RssShmem): a level, not a count of events.")),
        (VmEvent.ThpFaultAlloc, new(VmCounters.ThpFaultAlloc, "{fault}", VmCounterKind.Counter, "Huge pages a fault allocated and mapped with one PMD (/proc/vmstat thp_fault_alloc).")),
        (VmEvent.ThpFaultFallback, new(VmCounters.ThpFaultFallback, "{fault}", VmCounterKind.Counter, "Huge faults that found no free huge block and fell back to 4 KiB pages (/proc/vmstat thp_fault_fallback).")),
        (VmEvent.ThpSplitPmd, new(VmCounters.ThpSplitPmd, "{split}", VmCounterKind.Counter, "Huge PMDs split into 512 PTEs (/proc/vmstat thp_split_pmd).")),
        (VmEvent.ThpZeroPageAlloc, new(VmCounters.ThpZeroPageAlloc, "{page}", VmCounterKind.Counter, "Huge zero pages allocated (/proc/vmstat thp_zero_page_alloc).")),
        (VmEvent.SwapIn, new(VmCounters.SwapIn, "{page}", VmCounterKind.Counter, "Pages read in from a swap area (/proc/vmstat pswpin).")),
        (VmEvent.SwapOut, new(VmCounters.SwapOut, "{page}", VmCounterKind.Counter, "Pages written out to a swap area (/proc/vmstat pswpout).")),
        (VmEvent.MajorFault, new(VmCounters.MajorFault, "{fault}", VmCounterKind.Counter, "Faults that had to read the page from a swap area (/proc/vmstat pgmajfault).")),
        (VmEvent.ScanKswapd, new(VmCounters.ScanKswapd, "{page}", VmCounterKind.Counter, "Pages the background reclaimer looked at on the inactive list (/proc/vmstat pgscan_kswapd).")),
        (VmEvent.ScanDirect, new(VmCounters.ScanDirect, "{page}", VmCounterKind.Counter, "Pages direct reclaim looked at on the inactive list, for an allocation that failed (/proc/vmstat pgscan_direct).")),
        (VmEvent.StealKswapd, new(VmCounters.StealKswapd, "{page}", VmCounterKind.Counter, "Pages the background reclaimer freed (/proc/vmstat pgsteal_kswapd).")),
        (VmEvent.StealDirect, new(VmCounters.StealDirect, "{page}", VmCounterKind.Counter, "Pages direct reclaim freed (/proc/vmstat pgsteal_direct).")),
        (VmEvent.Activate, new(VmCounters.Activate, "{page}", VmCounterKind.Counter, "Pages moved to the active list: referenced when reclaim looked at them (/proc/vmstat pgactivate).")),
        (VmEvent.Deactivate, new(VmCounters.Deactivate, "{page}", VmCounterKind.Counter, "Pages moved from the active to the inactive list (/proc/vmstat pgdeactivate).")),
        (VmEvent.LazyFreed, new(VmCounters.LazyFreed, "{page}", VmCounterKind.Counter, "MADV_FREE pages reclaim discarded because they stayed clean (/proc/vmstat pglazyfreed).")),
        (VmEvent.AllocStall, new(VmCounters.AllocStall, "{fault}", VmCounterKind.Counter, "Faults that found no free frame and ran direct reclaim (/proc/vmstat allocstall_*).")),
        (VmEvent.KswapdRun, new(VmCounters.KswapdRun, "{run}", VmCounterKind.Counter, "Background reclaimer runs (/proc/vmstat pageoutrun).")),
        (VmEvent.SwapWriteFailed, new(VmCounters.SwapWriteFailed, "{page}", VmCounterKind.Counter, "Page-outs whose write failed: the page stayed in memory, dirty (end_swap_bio_write's redirty).")),
        (VmEvent.ThpCollapseAlloc, new(VmCounters.ThpCollapseAlloc, "{page}", VmCounterKind.Counter, "Huge pages a collapse allocated and mapped in place of 512 PTEs (/proc/vmstat thp_collapse_alloc).")),
        (VmEvent.ThpCollapseAllocFailed, new(VmCounters.ThpCollapseAllocFailed, "{page}", VmCounterKind.Counter, "Collapses that found no free huge block (/proc/vmstat thp_collapse_alloc_failed).")),
        (VmEvent.SwapReadahead, new(VmCounters.SwapReadahead, "{page}", VmCounterKind.Counter, "Pages swap readahead read into the swap cache beside a faulting page (/proc/vmstat swap_ra).")),
        (VmEvent.SwapReadaheadHit, new(VmCounters.SwapReadaheadHit, "{page}", VmCounterKind.Counter, "Pages read ahead that a fault then found in the swap cache (/proc/vmstat swap_ra_hit).")),
        (VmEvent.OomKill, new(VmCounters.OomKill, "{fault}", VmCounterKind.Counter, "Accesses failed as a memory group's OOM victim, its reclaim and OOM handler having made no room (/proc/vmstat oom_kill).")),
        (VmEvent.SpeculativeMemcgCharge, new(VmCounters.SpeculativeMemcgCharge, "{fault}", VmCounterKind.Counter, "Speculative faults whose memory-group charge failed; the classic path charged again and decided (VM_FAULT_RETRY).")),
    ];

    private static readonly VmCounterInfo[] s_byEvent = Index();

    /// <summary>Number of events.</summary>
    public static int Count => s_byEvent.Length;

    /// <summary>Every counter, in event order.</summary>
    public static IReadOnlyList<VmCounterInfo> All => s_byEvent;

    /// <summary>The counter name of an event.</summary>
    public static string Of(VmEvent e) => s_byEvent[(int)e].Name;

    /// <summary>The public description of an event.</summary>
    public static VmCounterInfo Info(VmEvent e) => s_byEvent[(int)e];

    private static VmCounterInfo[] Index()
    {
        VmEvent[] events = Enum.GetValues<VmEvent>();
        var byEvent = new VmCounterInfo?[events.Length];
        foreach ((VmEvent e, VmCounterInfo counter) in s_table)
        {
            if (byEvent[(int)e] is not null)
            {
                throw new InvalidOperationException($"two rows for {e}");
            }
            byEvent[(int)e] = counter;
        }
        return events.Select(e => byEvent[(int)e] ?? throw new InvalidOperationException($"no counter row for {e}")).ToArray();
    }
}
