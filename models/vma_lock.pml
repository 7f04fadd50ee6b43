/*
 * vma_lock.pml -- SPIN model of the per-VMA lock built on vm_refcnt
 * (Linux 6.15+, include/linux/mmap_lock.h, mm/mmap_lock.c).
 *
 * What is modelled
 * ----------------
 *   mm->mm_lock_seq   seqcount of mmap_lock: even = not write-held.
 *                     mmap_write_lock() makes it odd; mmap_write_unlock()
 *                     (vma_end_write_all()) makes it even again, which drops
 *                     every VMA write lock taken in that cycle at once.
 *                     Arithmetic is modulo SEQ_MOD to model wrap-around.
 *   vma->vm_lock_seq  stamped with mm_lock_seq by vma_start_write(); the VMA
 *                     is write-locked iff vm_lock_seq == mm_lock_seq.
 *                     Initialised to SEQ_MOD-1 (the kernel uses UINT_MAX).
 *   vma->vm_refcnt    0 = detached, 1 = attached, 1+n = n readers;
 *                     VMA_LOCK_OFFSET is added while a writer / detacher
 *                     excludes readers.  Readers refuse to increment at or
 *                     above VMA_REF_LIMIT = VMA_LOCK_OFFSET-1, so readers can
 *                     never set the OFFSET bit themselves.  VMA_LOCK_OFFSET
 *                     is 4 here so that 3 readers actually hit REF_LIMIT.
 *   mm->vma_writer_wait (rcuwait) is the boolean `wake`: the writer does
 *                     "wake = false (set_current_state); check condition;
 *                     sleep until wake" and vma_refcount_put() sets wake.
 *
 *   Reader  = vma_start_read() / vma_end_read() (vma_refcount_put()).
 *   Writer  = mmap_write_lock, vma_start_write (__vma_enter_locked /
 *             __vma_exit_locked), modify, vma_mark_detached,
 *             vma_mark_attached, vma_start_write again (no-op), modify,
 *             mmap_write_unlock; then a cycle that does not touch the VMA;
 *             then a third cycle that write-locks and modifies it again.
 *   Readers may attempt vma_start_read at any moment (they may hold a stale
 *   pointer obtained from the RCU lookup before a detach), NATTEMPTS times.
 *
 * Atomicity: each refcount operation (inc_not_zero_limited, dec-and-read,
 * add_not_zero, sub) is one atomic step; other shared reads are separate
 * steps.  SPIN explores sequentially consistent interleavings only; the
 * acquire/release orderings the kernel needs are listed in the comments.
 *
 * Properties and which bug each one catches
 * -----------------------------------------
 *  (a) mutual exclusion: assert(!modifying) inside the reader and
 *      assert(readers_inside == 0) when the writer starts modifying.
 *      -DBROKEN_NO_RECHECK (reader skips the authoritative vm_lock_seq
 *      re-check after incrementing vm_refcnt) => assertion violated.
 *  (b) after vma_mark_detached(): vm_refcnt == 0 and no reader inside;
 *      a reader inside always sees the VMA attached.
 *  (c) the writer's sleep always ends: a lost wake-up leaves the writer
 *      blocked on `wake == true` => "invalid end state".
 *      -DBROKEN_LOST_WAKEUP (writer clears `wake` AFTER testing the
 *      condition) => invalid end state.
 *  (d) readers never wait: the Reader proctype contains no statement that
 *      can block (every guard has an else), so a blocked reader would also
 *      show up as an invalid end state.
 *  (e) final state: mm_lock_seq even, vm_refcnt == 1, nobody inside.
 *  -DBROKEN_SEQ_WRAP sets SEQ_MOD = 4: after one untouched mmap write cycle
 *      the stale vm_lock_seq equals the new odd mm_lock_seq, and the WRITER
 *      believes it already holds the VMA lock (__is_vma_write_locked) and
 *      skips excluding readers => (a) violated.  Wrap-around is harmless on
 *      the reader side (only a false "locked"), but not on the writer side:
 *      the kernel accepts this because it needs 2^31 write cycles; use a
 *      64-bit sequence in an implementation.
 */

#ifndef NREADERS
#define NREADERS 3
#endif
#ifndef NATTEMPTS
#define NATTEMPTS 3
#endif

#define VMA_LOCK_OFFSET 4
#define VMA_REF_LIMIT   (VMA_LOCK_OFFSET - 1)

#ifdef BROKEN_SEQ_WRAP
#define SEQ_MOD 4
#else
#define SEQ_MOD 8
#endif

/* is_vma_writer_only(): OFFSET set and no readers left (attached: OFFSET+1,
 * detaching: OFFSET). */
#define WRITER_ONLY(n) ((((n) & VMA_LOCK_OFFSET) != 0) && ((n) <= VMA_LOCK_OFFSET + 1))

byte mm_lock_seq = 0;
byte vm_lock_seq = SEQ_MOD - 1;
byte vm_refcnt   = 1;           /* attached, no readers */
bool wake        = false;       /* rcuwait: writer woken */

/* ghost state for the properties */
bool modifying      = false;
byte readers_inside = 0;
bool attached       = true;
byte finished       = 0;

/* vma_refcount_put(): dec with release, wake the writer if it is now alone */
inline vma_refcount_put(leaving)
{
	atomic {
		readers_inside = readers_inside - leaving;
		vm_refcnt--;
		cnt = vm_refcnt
	};
	if
	:: WRITER_ONLY(cnt) -> wake = true      /* rcuwait_wake_up() */
	:: else -> skip
	fi;
	cnt = 0
}

active [NREADERS] proctype Reader()
{
	byte i = 0;
	byte cnt = 0;
	bool ok = false;

	do
	:: atomic {
		i < NATTEMPTS ->
		i++;
		/* (1) cheap, unordered check; may give a false "locked" */
		ok = (vm_lock_seq != mm_lock_seq)
	   };
		if
		:: ok ->
			/* (2) __refcount_inc_not_zero_limited_acquire(VMA_REF_LIMIT) */
			atomic {
				if
				:: vm_refcnt == 0 -> ok = false              /* detached: -EAGAIN ("MISS") */
				:: vm_refcnt >= VMA_REF_LIMIT -> ok = false  /* writer present or full */
				:: else -> vm_refcnt++; ok = true
				fi
			};
			if
			:: ok ->
#ifndef BROKEN_NO_RECHECK
				/* (3) authoritative re-check.  mm_lock_seq is read with
				 * ACQUIRE, pairing with RELEASE in vma_end_write_all().
				 * One step: while we hold a reference nobody can stamp
				 * vm_lock_seq, so reading the two words separately
				 * gives the same outcomes. */
				atomic {
					if
					:: vm_lock_seq == mm_lock_seq -> ok = false
					:: else -> readers_inside++
					fi
				};
				if
				:: ok ->
#else
				readers_inside++;
				if
				:: true ->
#endif
					/* inside: read the VMA */
					atomic {
						assert(!modifying);
						assert(attached && vm_refcnt >= 2)
					};
					vma_refcount_put(1)          /* vma_end_read() */
				:: else ->
					vma_refcount_put(0)          /* locked: back off */
				fi
			:: else -> skip
			fi
		:: else -> skip
		fi;
		ok = false
	:: atomic { else -> break }
	od;
	finished++
}

/* rcuwait_wait_event(&mm->vma_writer_wait, vm_refcnt == tgt, ...) */
inline wait_refcnt(tgt)
{
	do
	::
#ifndef BROKEN_LOST_WAKEUP
		wake = false;                   /* set_current_state() */
		if
		:: vm_refcnt == tgt -> break
		:: else -> wake == true         /* schedule(): sleep */
		fi
#else
		if
		:: vm_refcnt == tgt -> break
		:: else -> wake = false; wake == true
		fi
#endif
	od
}

/* __vma_enter_locked(): refcount_add_not_zero(OFFSET) then wait */
inline vma_enter_locked(tgt)
{
	atomic {
		if
		:: vm_refcnt != 0 -> vm_refcnt = vm_refcnt + VMA_LOCK_OFFSET; locked = true
		:: else -> locked = false
		fi
	};
	if
	:: locked -> wait_refcnt(tgt)
	:: else -> skip
	fi
}

inline vma_start_write()
{
	if
	:: vm_lock_seq == mm_lock_seq -> skip    /* __is_vma_write_locked() */
	:: else ->
		vma_enter_locked(VMA_LOCK_OFFSET + 1);
		vm_lock_seq = mm_lock_seq;
		if
		:: locked ->                       /* __vma_exit_locked() (release) */
			atomic {
				vm_refcnt = vm_refcnt - VMA_LOCK_OFFSET;
				assert(vm_refcnt != 0)     /* must stay attached */
			}
		:: else -> skip
		fi
	fi
}

inline modify()
{
	atomic { modifying = true; assert(readers_inside == 0) };
	modifying = false
}

inline vma_mark_detached()
{
	assert(vm_lock_seq == mm_lock_seq);      /* vma_assert_write_locked */
	atomic {
		assert(attached);
		attached = false;
		vm_refcnt--;                         /* refcount_dec_and_test */
		cnt = vm_refcnt
	};
	if
	:: cnt != 0 ->                           /* spurious readers */
		vma_enter_locked(VMA_LOCK_OFFSET);
		if
		:: locked ->
			atomic {
				vm_refcnt = vm_refcnt - VMA_LOCK_OFFSET;
				assert(vm_refcnt == 0)
			}
		:: else -> skip
		fi
	:: else -> skip
	fi;
	assert(vm_refcnt == 0 && readers_inside == 0)   /* property (b) */
}

inline vma_mark_attached()
{
	atomic {
		assert(vm_refcnt == 0 && !attached);  /* only from detached */
		vm_refcnt = 1;                        /* release store */
		attached = true
	}
}

inline mmap_write_lock()   { mm_lock_seq = (mm_lock_seq + 1) % SEQ_MOD; assert(mm_lock_seq % 2 == 1) }
inline mmap_write_unlock() { mm_lock_seq = (mm_lock_seq + 1) % SEQ_MOD }  /* vma_end_write_all, release */

active proctype Writer()
{
	byte cnt;
	bool locked;

	/* cycle 1: lock, modify, detach, re-insert, modify again */
	mmap_write_lock();
	vma_start_write();
	modify();
	vma_mark_detached();
	vma_mark_attached();
	vma_start_write();                       /* already locked: no-op */
	assert(vm_lock_seq == mm_lock_seq);
	modify();
	mmap_write_unlock();

	/* cycle 2: mmap write-locked, this VMA untouched */
	mmap_write_lock();
	mmap_write_unlock();

	/* cycle 3: write-lock the VMA again (readers may be inside now) */
	mmap_write_lock();
	vma_start_write();
	modify();
	mmap_write_unlock();

	finished++
}

active proctype Final()
{
	finished == NREADERS + 1;
	assert(mm_lock_seq % 2 == 0);
	assert(vm_refcnt == 1 && attached && readers_inside == 0 && !modifying)
}
