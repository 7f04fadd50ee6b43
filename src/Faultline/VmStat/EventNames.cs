namespace Faultline.VmStat;

/// <summary>Printed names of <see cref="VmEvent"/>s (kernel names where they exist).</summary>
internal static class EventNames
{
    private static readonly string[] s_names = Build();

    /// <summary>Number of events.</summary>
    public static int Count => s_names.Length;

    /// <summary>The name of an event.</summary>
    public static string Of(VmEvent e) => s_names[(int)e];

    private static string[] Build()
    {
        var names = new string[Enum.GetValues<VmEvent>().Length];
        foreach (VmEvent e in Enum.GetValues<VmEvent>())
        {
            names[(int)e] = e switch
            {
                VmEvent.PageFault => "pgfault",
                VmEvent.FaultHandled => "fault_handled",
                VmEvent.AnonymousFault => "anon_fault",
                VmEvent.ZeroPageFault => "zero_page_fault",
                VmEvent.WriteProtectFault => "wp_fault",
                VmEvent.CowFault => "cow_fault",
                VmEvent.CowReuse => "cow_reuse",
                VmEvent.Fork => "fork",
                VmEvent.FaultRaceLost => "fault_race_lost",
                VmEvent.SegvMapErr => "segv_maperr",
                VmEvent.SegvAccErr => "segv_accerr",
                VmEvent.OutOfMemory => "oom",
                VmEvent.ClassicFault => "mmap_lock_fault",
                VmEvent.ClassicRetry => "mmap_lock_retry",
                VmEvent.VmaLockSuccess => "VMA_LOCK_SUCCESS",
                VmEvent.VmaLockAbort => "VMA_LOCK_ABORT",
                VmEvent.VmaLockRetry => "VMA_LOCK_RETRY",
                VmEvent.VmaLockMiss => "VMA_LOCK_MISS",
                VmEvent.SpeculativeSuccess => "spf_success",
                VmEvent.SpeculativeSingleUser => "spf_single_user",
                VmEvent.SpeculativeVmaNotSupported => "spf_vma_notsup",
                VmEvent.SpeculativeVmaChanged => "spf_vma_changed",
                VmEvent.SpeculativeNoVma => "spf_vma_novma",
                VmEvent.SpeculativeVmaAccess => "spf_vma_access",
                VmEvent.SpeculativePmdChanged => "spf_pmd_changed",
                VmEvent.SpeculativePteLock => "spf_pte_lock",
                VmEvent.SpeculativeTrylockRetry => "spf_trylock_retry",
                VmEvent.SpeculativeTableAlloc => "spf_table_alloc",
                VmEvent.SpeculativeFallback => "spf_fallback",
                VmEvent.TlbFill => "tlb_fill",
                VmEvent.TlbFlush => "tlb_flush",
                VmEvent.TlbRangeFlush => "tlb_range_flush",
                VmEvent.MapCall => "mmap",
                VmEvent.UnmapCall => "munmap",
                VmEvent.ProtectCall => "mprotect",
                VmEvent.GracePeriod => "grace_period",
                VmEvent.GracePeriodReaderWait => "grace_period_reader_wait",
                VmEvent.AnonPages => "nr_anon_pages",
                _ => e.ToString(),
            };
        }
        return names;
    }
}
