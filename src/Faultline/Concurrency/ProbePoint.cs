namespace Faultline.Concurrency;

/// <summary>
/// Named steps of the fault paths and writers where a test can stop a thread (see <see cref="ProbeSet"/>).
/// Each race the seed threads discuss is staged by stopping a fault at one of these while a writer runs.
/// </summary>
internal enum ProbePoint
{
    /// <summary>Speculative: the VMA was found with no lock, before its sequence is read.</summary>
    SpeculativeAfterLookup,
    /// <summary>Speculative: flags and protection snapshotted, sequence validated, before the page-table walk.</summary>
    SpeculativeAfterSnapshot,
    /// <summary>Speculative: the walk is done and the read section left, before the PTE handler runs.</summary>
    SpeculativeBeforeHandle,
    /// <summary>Speculative: before <c>pte_map_lock</c> (the frame is allocated for an anonymous fault).</summary>
    SpeculativeBeforePteLock,
    /// <summary>Speculative: a PTE-lock trylock failed inside the read section, before leaving it to retry.</summary>
    SpeculativePteTrylockFailed,
    /// <summary>Speculative table allocation: the new table is allocated, before <c>page_table_lock</c>.</summary>
    SpeculativeBeforeTableInstall,
    /// <summary>Speculative walk: inside the read section, upper levels read, before the PTE is read.</summary>
    SpeculativeInWalk,
    /// <summary>
    /// Speculative table allocation: <c>page_table_lock</c> held and the VMA re-validated, before the new table is
    /// written into its slot.
    /// </summary>
    SpeculativeTableInstallLocked,
    /// <summary>
    /// Speculative table allocation: about to read the next entry from a non-root table reached outside any read
    /// section (the table is only known to be alive while the VMA is unchanged).
    /// </summary>
    SpeculativeAllocWalkLevel,
    /// <summary>VMA lock: the VMA was found, before <c>vma_start_read</c>.</summary>
    VmaLockAfterLookup,
    /// <summary>VMA lock: the VMA is read-locked, before the fault is handled.</summary>
    VmaLockLocked,
    /// <summary><c>vma_start_read</c>: the cheap <c>vm_lock_seq</c> check passed, before the refcount increment.</summary>
    VmaReadBeforeIncrement,
    /// <summary><c>vma_start_read</c>: the refcount is raised, before the authoritative <c>vm_lock_seq</c> re-check.</summary>
    VmaReadIncremented,
    /// <summary>Copy-on-write (<c>wp_page_copy</c>, any path): the new frame holds the copy, before the PTE lock.</summary>
    CowCopiedBeforePteLock,
    /// <summary>Fork: a parent VMA is write-locked and its SPF sequence open, before its page tables are copied.</summary>
    ForkBeforeVmaCopy,
    /// <summary>Fork: every VMA is copied and the parent's entries write-protected, before the parent's TLB flush.</summary>
    ForkBeforeFlush,
    /// <summary>Anonymous fault (any path): the frame is allocated and zeroed, before the PTE lock.</summary>
    AnonymousBeforePteLock,
    /// <summary>
    /// <c>finish_fault</c> (any path): the backing's page is looked up or allocated and referenced for this fault,
    /// before <c>pte_map_lock</c>.
    /// </summary>
    BackingFaultBeforePteLock,
    /// <summary>Classic path: <c>mmap_lock</c> is held for read and the VMA found.</summary>
    ClassicLocked,
    /// <summary>Writer: TLB generation bumped, before waiting for the grace period (possibly under a PTE lock).</summary>
    GatherBeforeGracePeriod,
    /// <summary>Writer: munmap published the tree without the range and downgraded to the read lock, before the zap.</summary>
    UnmapDowngraded,
    /// <summary>Writer: munmap flushed the TLBs and dropped the mmap lock, before it frees the frames and tables it gathered.</summary>
    UnmapUnlockedBeforeRelease,
    /// <summary>Diagnostic lookup (pagemap, smaps): the PMD entry is read and the PTE table known, before the PTE is read.</summary>
    DiagnosticLookupAfterPmd,
    /// <summary>Writer: <c>vma_start_write</c> is about to wait for readers to drain.</summary>
    VmaWriterWaiting,
    /// <summary>Writer: <c>vma_mark_detached</c> found spurious readers and is about to wait.</summary>
    VmaDetachWaiting,
    /// <summary>Writer: <c>vma_mark_detached</c> entered (the VMA is write-locked and out of the tree), before the decrement.</summary>
    VmaBeforeDetach,
    /// <summary>
    /// Classic path, stack expansion: the read lock is dropped to take the write lock (there is no upgrade), before
    /// <c>mmap_write_lock</c>; another writer may run here, so the VMA is looked up again under the write lock.
    /// </summary>
    StackExpansionUnlocked,
    /// <summary>Stack expansion: the grown VMA replaced the old one and the tree is published, write lock still held.</summary>
    StackExpanded,
    /// <summary>
    /// mremap: entries of the old range were moved (one PTE batch or a whole PMD) under the page-table locks, before
    /// the TLB flush of the old range (<c>move_ptes</c>, <c>move_normal_pmd</c>).
    /// </summary>
    RemapMovedBeforeFlush,
    /// <summary>Host-memory fault (any path): the window frame is known, before <c>pte_map_lock</c>.</summary>
    HostFaultBeforePteLock,
    /// <summary>
    /// TLB miss: the lockless walk found a permitted entry and set its accessed/dirty bits, inside the read section,
    /// before the translation is cached in the TLB.
    /// </summary>
    TlbFillBeforeInsert,
    /// <summary>Pin: a page was faulted in with no lock held, before the mmap read lock is taken to look it up again.</summary>
    PinFaultedBeforeLookup,
    /// <summary>
    /// Cpu TLB miss: the lockless walk found an entry permitting the access, inside the read section, before the
    /// accessed/dirty CAS, the fill and the access itself.
    /// </summary>
    TlbMissWalked,
    /// <summary>User fault: the fault is queued on its channel and its lock released, before it sleeps.</summary>
    UserFaultBlocked,
    /// <summary>User fault: the sleep ended (woken or timed out), before the fault is retried.</summary>
    UserFaultWoken,
    /// <summary>User-fault resolution (<c>UFFDIO_COPY</c> and kin): the page is filled, before the PTE lock.</summary>
    UserFaultFillBeforePteLock,
    /// <summary>
    /// Any fault path: a device (MMIO) VMA is held in place — mmap read lock or VMA read lock — and the access allowed,
    /// before the device is called.
    /// </summary>
    DeviceAccessLocked,
    /// <summary>
    /// User-fault resolution or move (<c>uffd_lock_vma</c>): the lockless lookup found the VMA, inside the walk section,
    /// before <c>vma_start_read</c>.
    /// </summary>
    UserFaultLockAfterLookup,
    /// <summary><c>UFFDIO_MOVE</c>: both VMAs are locked and the source page is known, before the two PTE locks.</summary>
    UserFaultMoveBeforePteLocks,
    /// <summary>
    /// Huge anonymous fault (classic or VMA-lock path): the huge block is allocated and zeroed, before
    /// <c>page_table_lock</c> is taken to install it over the empty PMD.
    /// </summary>
    HugeFaultBeforePmdLock,
    /// <summary>Write fault on a read-only huge PMD (<c>do_huge_pmd_wp_page</c>), before the PMD is checked and changed under its lock.</summary>
    HugeWriteProtectBeforePmdLock,
    /// <summary>do_swap_page: the swap entry was read from the PTE, before <c>pte_unmap_same</c>.</summary>
    SwapInBeforeUnmapSame,
    /// <summary>do_swap_page: the page is in hand (from the swap cache or read in), before the PTE lock.</summary>
    SwapInBeforePteLock,
    /// <summary>Reclaim: every PTE mapping the frame holds the swap entry and the TLBs were flushed, before the page-out.</summary>
    ReclaimUnmapped,
    /// <summary>Swap readahead: a neighbour's slot is claimed and read into a new frame, before the frame joins the swap cache.</summary>
    SwapReadaheadBeforeInsert,
    /// <summary>
    /// <c>copy_present_pte</c>: a writable parent entry of a copy-on-write mapping was read and its frame shared, under
    /// both PTE locks, before the entry is write-protected (a Cpu's lockless TLB fill may still set its accessed and
    /// dirty bits).
    /// </summary>
    ForkBeforeWriteProtect,
    /// <summary>
    /// Huge-page collapse (<c>collapse_huge_page</c>): the PMD over the PTE table is cleared and the TLBs flushed
    /// (<c>pmdp_collapse_flush</c>), before the PTE lock is taken and the entries are copied.
    /// </summary>
    CollapseAfterPmdFlush,
    /// <summary>
    /// A fault's charge to its memory group failed (<c>try_charge</c> over <c>memory.max</c>): the group is recorded in
    /// the Cpu's memcg OOM state, before the handler unwinds with VM_FAULT_OOM.
    /// </summary>
    MemcgChargeFailed,
    /// <summary>
    /// <c>change_huge_pmd</c> (mprotect of a whole huge PMD): the PMD was read under <c>page_table_lock</c> and its new
    /// protection computed, before it is written (a Cpu's lockless TLB fill may still set its accessed and dirty bits).
    /// </summary>
    ChangeHugePmdBeforeUpdate,
}
