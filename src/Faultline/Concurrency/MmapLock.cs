namespace Faultline.Concurrency;

/// <summary>
/// The address space's reader/writer semaphore (the kernel's <c>mmap_lock</c>) together with its write-section
/// sequence (<c>mm_lock_seq</c>). Writers are preferred: once a writer waits, new readers queue behind it, so a
/// stream of faults cannot starve map/unmap/protect; and a writer that has slept for longer than
/// <see cref="DefaultHandoffDelay"/> is handed the lock before any writer that arrives later (the kernel's
/// <c>RWSEM_FLAG_HANDOFF</c>, set once the first waiter is older than <c>RWSEM_WAIT_TIMEOUT</c>), so a thread that
/// releases and retakes the lock in a loop cannot starve another writer either. Before that delay a running writer
/// may take the lock ahead of a sleeping one (lock stealing): handing it over at once would leave the lock idle until
/// the sleeper is scheduled on every release, a convoy that cut map/unmap throughput 100-fold at 16 threads. The sequence is odd while the lock is held for write; the
/// per-VMA lock stamps that odd value into a VMA to write-lock it, and ending the write section (unlock or
/// downgrade) makes it even again, releasing every VMA write lock at once (<c>vma_end_write_all</c>).
/// </summary>
/// <remarks>
/// Blocking uses one monitor. Lost wake-ups are impossible: a sleeper registers in <c>_sleepers</c> (Interlocked,
/// a full fence) before its last try under the monitor, and a releaser changes <c>_state</c> (Interlocked) before
/// it reads <c>_sleepers</c>; so either the releaser sees the sleeper and pulses under the monitor (which the sleeper
/// holds until it waits), or the sleeper's try sees the release.
/// </remarks>
internal sealed class MmapLock
{
    private const int WriterHeld = 1 << 30;
    private const int SpinTries = 24;

    /// <summary>How long a writer sleeps before it claims the hand-off (<c>RWSEM_WAIT_TIMEOUT</c>: 4 ms at HZ=1000).</summary>
    public static readonly TimeSpan DefaultHandoffDelay = TimeSpan.FromMilliseconds(4);

    private readonly TimeSpan _handoffDelay;

    private readonly object _gate = new();
    private int _state;           // reader count, or WriterHeld
    private int _writersWaiting;  // writers that announced themselves: new readers back off
    private int _sleepers;        // threads blocked (or about to block) on _gate
    private int _handoffWriter;   // managed id of the sleeping writer the lock goes to next, or 0
    private long _lockSequence;   // mm_lock_seq: odd while write-held; 64-bit, so it never wraps in practice

    /// <summary>A lock whose sleeping writers claim the hand-off after <see cref="DefaultHandoffDelay"/>.</summary>
    public MmapLock()
        : this(DefaultHandoffDelay)
    {
    }

    /// <summary>A lock whose sleeping writers claim the hand-off after <paramref name="handoffDelay"/> (tests).</summary>
    public MmapLock(TimeSpan handoffDelay) => _handoffDelay = handoffDelay;

    /// <summary><c>mmap_read_trylock</c>: fails at once if a writer holds or waits for the lock.</summary>
    public bool TryEnterRead()
    {
        while (true)
        {
            int state = Volatile.Read(ref _state);
            if ((state & WriterHeld) != 0 || Volatile.Read(ref _writersWaiting) != 0)
            {
                return false;
            }
            // The CAS is a full fence: the critical section's reads cannot move above it (acquire).
            if (Interlocked.CompareExchange(ref _state, state + 1, state) == state)
            {
                return true;
            }
        }
    }

    /// <summary><c>mmap_read_lock</c>.</summary>
    public void EnterRead()
    {
        var spinner = new SpinWait();
        for (int i = 0; i < SpinTries; i++)
        {
            if (TryEnterRead())
            {
                return;
            }
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        Interlocked.Increment(ref _sleepers);
        lock (_gate)
        {
            while (!TryEnterRead())
            {
                Monitor.Wait(_gate);
            }
        }
        Interlocked.Decrement(ref _sleepers);
    }

    /// <summary><c>mmap_read_unlock</c>.</summary>
    public void ExitRead()
    {
        int state = Interlocked.Decrement(ref _state);
        Debug.Assert(state >= 0 && (state & WriterHeld) == 0, "read unlock of a lock not read-held");
        if (state == 0 && Volatile.Read(ref _sleepers) != 0)
        {
            WakeAll();
        }
    }

    /// <summary><c>mmap_write_trylock</c>: fails at once if the lock is held or promised to a sleeping writer.</summary>
    public bool TryEnterWrite()
    {
        if (!TryTakeWrite(Environment.CurrentManagedThreadId))
        {
            return false;
        }
        BeginWriteSection();
        return true;
    }

    // The write CAS, refused while the lock is handed off to another writer. The hand-off mark is read before the
    // CAS (acquire, pairing with the Interlocked claim of the mark): a writer that set it before this read is seen.
    private bool TryTakeWrite(int self)
    {
        int handoff = Volatile.Read(ref _handoffWriter);
        if (handoff != 0 && handoff != self)
        {
            return false;
        }
        if (Interlocked.CompareExchange(ref _state, WriterHeld, 0) != 0)
        {
            return false;
        }
        if (handoff == self)
        {
            // The promised writer took it: the next sleeper may claim the mark.
            Volatile.Write(ref _handoffWriter, 0);
        }
        return true;
    }

    /// <summary><c>mmap_write_lock</c>: announces itself so new readers queue behind it, then waits for readers to drain.</summary>
    public void EnterWrite()
    {
        Interlocked.Increment(ref _writersWaiting);
        int self = Environment.CurrentManagedThreadId;
        var spinner = new SpinWait();
        bool acquired = false;
        for (int i = 0; i < SpinTries && !acquired; i++)
        {
            acquired = TryTakeWrite(self);
            if (!acquired)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }
        if (!acquired)
        {
            Interlocked.Increment(ref _sleepers);
            long sleptSince = Stopwatch.GetTimestamp();
            lock (_gate)
            {
                while (true)
                {
                    TimeSpan slept = Stopwatch.GetElapsedTime(sleptSince);
                    if (slept >= _handoffDelay)
                    {
                        // RWSEM_FLAG_HANDOFF: a writer that waited too long claims the lock's next hand-off if no
                        // other did, so a writer that spins in later cannot take it first. Full fence; pairs with
                        // TryTakeWrite's read.
                        Interlocked.CompareExchange(ref _handoffWriter, self, 0);
                    }
                    if (TryTakeWrite(self))
                    {
                        break;
                    }
                    if (slept >= _handoffDelay)
                    {
                        Monitor.Wait(_gate);
                    }
                    else
                    {
                        // Wake at the deadline even if nobody releases, so the claim is not late.
                        Monitor.Wait(_gate, _handoffDelay - slept);
                    }
                }
            }
            Interlocked.Decrement(ref _sleepers);
        }
        Interlocked.Decrement(ref _writersWaiting);
        BeginWriteSection();
    }

    /// <summary><c>mmap_write_unlock</c>: ends the write section (releasing all VMA write locks), then the lock.</summary>
    public void ExitWrite()
    {
        Debug.Assert(IsWriteLocked, "write unlock of a lock not write-held");
        EndWriteSection();
        Interlocked.Exchange(ref _state, 0);
        if (Volatile.Read(ref _sleepers) != 0)
        {
            WakeAll();
        }
    }

    /// <summary><c>mmap_write_downgrade</c>: becomes a read lock without a window for another writer.</summary>
    public void DowngradeWrite()
    {
        Debug.Assert(IsWriteLocked, "downgrade of a lock not write-held");
        EndWriteSection();
        Interlocked.Exchange(ref _state, 1);
        if (Volatile.Read(ref _sleepers) != 0)
        {
            WakeAll();
        }
    }

    /// <summary>Threads blocked, or about to block, waiting for the lock (tests).</summary>
    internal int SleepingThreads => Volatile.Read(ref _sleepers);

    /// <summary>The managed thread id of the sleeping writer the lock is handed to next, or 0 (tests).</summary>
    internal int HandoffWriter => Volatile.Read(ref _handoffWriter);

    /// <summary>True while held for write (<c>mmap_assert_write_locked</c>).</summary>
    public bool IsWriteLocked => (Volatile.Read(ref _state) & WriterHeld) != 0;

    /// <summary>True while held for read or write (<c>mmap_assert_locked</c>).</summary>
    public bool IsLocked => Volatile.Read(ref _state) != 0;

    /// <summary>Writers that announced themselves and do not hold the lock yet (tests: a writer is queued).</summary>
    public int WritersWaiting => Volatile.Read(ref _writersWaiting);

    /// <summary>
    /// <c>mm_lock_seq</c>: an acquire read; odd while a write section is open. A VMA whose stamped sequence equals
    /// it is write-locked.
    /// </summary>
    internal long LockSequence => Volatile.Read(ref _lockSequence);

    /// <summary>Test hook: starts the sequence near a value (wrap-around tests). Only while unlocked.</summary>
    internal void SetLockSequenceForTest(long evenValue)
    {
        Debug.Assert((evenValue & 1) == 0 && !IsLocked);
        Volatile.Write(ref _lockSequence, evenValue);
    }

    // mmap_write_seqlock: the full fence orders the odd value before any VMA is stamped with it.
    private void BeginWriteSection() => Interlocked.Increment(ref _lockSequence);

    // vma_end_write_all: the release store publishes every change of the write section before readers can
    // see the sequence no longer equal to the stamps (pairs with the acquire re-check in vma_start_read).
    private void EndWriteSection() => Volatile.Write(ref _lockSequence, _lockSequence + 1);

    private void WakeAll()
    {
        lock (_gate)
        {
            Monitor.PulseAll(_gate);
        }
    }
}
