/*
 * spf.pml -- SPIN model of speculative page fault validation
 * (SPF series, Laurent Dufour / Peter Zijlstra 2017-2018: "mm: speculative
 * page fault handler", handle_speculative_fault(), vma_has_changed(),
 * pte_map_lock(), vm_write_begin()/vm_write_end() on vma->vm_sequence).
 *
 * What is modelled
 * ----------------
 *   seq              vma->vm_sequence (seqcount): odd while the unmapper
 *                    changes the VMA.
 *   detached         the VMA was unlinked from the mm (RB_EMPTY_NODE).
 *   pmd              the PMD entry: 0 = pmd_none, otherwise a PTE-table id.
 *                    Table 1 may pre-exist (chosen nondeterministically);
 *                    fault thread k allocates table k+2.
 *   pte[t]           the PTE for the faulting address in table t (0/1).
 *   ptl[t]           the split PTE lock of table t (pte_lockptr()); the
 *                    speculative side only ever trylocks it (it runs with
 *                    IRQs off in the kernel and must never spin-wait).
 *   page_table_lock  mm->page_table_lock, guards PMD population.
 *   table_freed[t]   ghost: table t was unhooked by free_pgtables().
 *   unmap_done       ghost: the munmap() finished.
 *
 *   Fault (NFAULTS threads, default 2) = handle_speculative_fault():
 *     s = seq; abort if odd or detached; orig_pmd = pmd;
 *     if pmd_none: lock page_table_lock; abort if vma_has_changed;
 *       populate pmd if still none; unlock; orig_pmd = pmd;
 *     allocate a frame;
 *     pte_map_lock(): loop { abort if vma_has_changed; abort if
 *       pmd != orig_pmd; spin_trylock(ptl) or retry; under ptl abort if
 *       vma_has_changed (the re-check); }
 *     if pte already set: another thread won; else install; unlock.
 *   Unmapper = munmap(): vm_write_begin (seq odd); detach; zap_pte_range
 *     (ptl: clear pte); free_pgtables (ptl: clear any residual pte, then
 *     page_table_lock: pmd_clear, table freed); vm_write_end; done.
 *     free_pgtables reads pmd under page_table_lock when it finds none, so
 *     a table hooked in by a fault that validated just before seq went odd
 *     is still found and freed.
 *
 * Atomicity: vma_has_changed() is one step (seq and detached are read
 * together; the writer makes seq odd before it detaches, so reading them
 * separately adds nothing).  SPIN is sequentially consistent; the kernel
 * needs smp_rmb() in vma_has_changed() pairing with the seqcount wmb.
 *
 * Properties and which bug each one catches
 * -----------------------------------------
 *  (a) at install time: !unmap_done and !table_freed[orig_pmd]
 *      (no PTE is ever written into an unhooked table / after munmap).
 *  (b) free_pgtables never finds a residual PTE: the zap is complete
 *      (with the re-check a PTE cannot appear after the zap).  Counted in
 *      residual_zaps and asserted zero in the final state.
 *  (c) final state: pte[t] == 0 for every table and pmd == 0 (no leaked
 *      mapping and no leaked page table) once the unmap is done.
 *  (d) the speculative side never blocks on ptl (trylock + retry; any
 *      blocked process would be an invalid end state).
 *  -DBROKEN_NO_PTL_RECHECK removes the vma_has_changed() re-check taken
 *      under the PTE lock => a PTE is installed after the zap / after the
 *      table was freed and unmap_done: (a)/(b) assertion violated.
 *  -DBROKEN_ALLOC_NO_RECHECK removes the vma_has_changed() check under
 *      page_table_lock before pmd_populate() => a new table is hooked into
 *      the PMD after free_pgtables() ran: (c) violated (leaked table).
 *  -DBROKEN_FREE_PGTABLES_NO_RELOOK: free_pgtables() trusts an unlocked
 *      "pmd is none" read.  A fault that validated under page_table_lock
 *      just before seq went odd populates the PMD right after that read
 *      => (c) violated (leaked table).  So free_pgtables must decide
 *      "nothing to free" under page_table_lock.
 */

#ifndef NFAULTS
#define NFAULTS 2
#endif
#define NTABLES (NFAULTS + 2)

byte seq             = 0;
bool detached        = false;
byte pmd             = 0;
bit  pte[NTABLES];
bit  ptl[NTABLES];
bit  page_table_lock = 0;

/* ghost state */
bool table_freed[NTABLES];
bool unmap_done = false;
byte installed  = 0;
byte residual_zaps = 0;
byte finished   = 0;

#define vma_has_changed(s)  (seq != (s) || detached)

inline spin_lock(l)   { atomic { l == 0 -> l = 1 } }
inline spin_unlock(l) { assert(l == 1); l = 0 }

proctype Fault(byte me)
{
	byte s;
	byte orig;
	bool got;

	atomic {
		s = seq;
		if
		:: (s % 2) == 1 -> goto out        /* writer active */
		:: detached -> goto out
		:: else -> orig = pmd
		fi
	};
	if
	:: orig == 0 ->
		/* speculative PTE-table allocation under page_table_lock */
		spin_lock(page_table_lock);
#ifndef BROKEN_ALLOC_NO_RECHECK
		if
		:: vma_has_changed(s) -> spin_unlock(page_table_lock); goto out
		:: else -> skip
		fi;
#endif
		if
		:: pmd == 0 -> pmd = me + 2         /* pmd_populate() */
		:: else -> skip
		fi;
		orig = pmd;
		spin_unlock(page_table_lock)
	:: else -> skip
	fi;

	skip;                                   /* allocate the frame */

again:	/* pte_map_lock() */
	if
	:: vma_has_changed(s) -> goto out
	:: pmd != orig -> goto out
	:: else -> skip
	fi;
	atomic {
		if
		:: ptl[orig] == 0 -> ptl[orig] = 1; got = true    /* spin_trylock */
		:: else -> got = false
		fi
	};
	if
	:: !got -> goto again
	:: else -> skip
	fi;
#ifndef BROKEN_NO_PTL_RECHECK
	if
	:: vma_has_changed(s) -> spin_unlock(ptl[orig]); goto out
	:: else -> skip
	fi;
#endif
	if
	:: pte[orig] != 0 -> skip               /* another thread won */
	:: else ->
		atomic {
			assert(!unmap_done);             /* property (a) */
			assert(!table_freed[orig]);      /* property (a) */
			pte[orig] = 1;
			installed++
		}
	fi;
	spin_unlock(ptl[orig]);
out:
	finished++
}

proctype Unmapper()
{
	byte t;

	seq++;                                  /* vm_write_begin: odd */
	detached = true;                        /* __vma_unlink */

	/* zap_page_range() */
	t = pmd;
	if
	:: t != 0 ->
		spin_lock(ptl[t]);
		pte[t] = 0;
		spin_unlock(ptl[t])
	:: else -> skip
	fi;

	/* free_pgtables() */
retry:
	t = pmd;
	if
	:: t != 0 ->
		spin_lock(ptl[t]);
		if
		:: pte[t] != 0 ->
			residual_zaps++;                 /* property (b), checked at the end */
			pte[t] = 0                       /* zap it anyway */
		:: else -> skip
		fi;
		spin_lock(page_table_lock);
		assert(pmd == t);
		pmd = 0;                             /* pmd_clear + pte_free */
		table_freed[t] = true;
		spin_unlock(page_table_lock);
		spin_unlock(ptl[t])
	:: else ->
		spin_lock(page_table_lock);
		if
#ifndef BROKEN_FREE_PGTABLES_NO_RELOOK
		:: pmd != 0 -> spin_unlock(page_table_lock); goto retry
#else
		:: pmd != 0 -> spin_unlock(page_table_lock)   /* table leaked */
#endif
		:: else -> spin_unlock(page_table_lock)
		fi
	fi;

	seq++;                                  /* vm_write_end: even */
	unmap_done = true;
	finished++
}

init
{
	byte k;
	atomic {
		if
		:: pmd = 0                          /* no PTE table yet */
		:: pmd = 1                          /* table 1 already hooked */
		fi;
		k = 0;
		do
		:: k < NFAULTS -> run Fault(k); k++
		:: else -> break
		od;
		run Unmapper();
		k = 0
	};
	finished == NFAULTS + 1;
	assert(unmap_done && pmd == 0 && seq % 2 == 0);   /* property (c) */
	assert(residual_zaps == 0);                       /* property (b) */
	k = 0;
	do
	:: k < NTABLES -> assert(pte[k] == 0); k++
	:: else -> break
	od
}
