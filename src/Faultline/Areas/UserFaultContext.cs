namespace Faultline.Areas;

/// <summary>
/// The state of one user-fault channel (the kernel's <c>struct userfaultfd_ctx</c>): its features, the faults blocked
/// on it (<c>fault_pending_wqh</c> until read, then <c>fault_wqh</c>), the non-cooperative events not yet read
/// (<c>event_wqh</c>), <c>mmap_changing</c> and <c>released</c>. VMAs registered with it point to it
/// (<see cref="Vma.UserFault"/>).
/// </summary>
/// <remarks>
/// Thread safety: every member may be called from any thread. One lock (a leaf: nothing is taken or waited for while
/// holding it, so faults take it under the mmap or VMA lock and a PTE lock may be held around it) guards the lists.
/// </remarks>
internal sealed class UserFaultContext
{
    // A reader polls this long for a message before it sleeps (as a blocked fault does, UserFaultWaiter).
    private static readonly long s_spinTicks = Stopwatch.Frequency / 50_000;

    private readonly object _lock = new();
    private readonly List<UserFaultWaiter> _waiters = [];
    private readonly Queue<UserFaultWaiter> _unread = new();
    private readonly Queue<UserFaultMessage> _events = new();
    private int _waiting;
    private int _readable;
    private int _sleepingReaders;
    private TaskCompletionSource? _asyncSignal;
    private int _released;
    private int _mappingsChanging;

    /// <summary>A channel with <paramref name="features"/> over the address space <paramref name="owner"/> (its public object).</summary>
    public UserFaultContext(UserFaultFeatures features, object owner, TimeSpan faultTimeout)
    {
        Features = features;
        Owner = owner;
        FaultTimeout = faultTimeout;
    }

    /// <summary><c>ctx->features</c>.</summary>
    public UserFaultFeatures Features { get; }

    /// <summary>The public object of the address space whose VMAs register with this channel (<c>ctx->mm</c>).</summary>
    public object Owner { get; }

    /// <summary>How long a fault waits before it gives up with SIGBUS (negative: forever, as on Linux).</summary>
    public TimeSpan FaultTimeout { get; }

    /// <summary>The public object serving this channel, once made (the child channel of a fork event is made when read).</summary>
    public object? Channel { get; set; }

    /// <summary><c>ctx->released</c>: the channel was closed. An acquire read, pairing with <see cref="MarkReleased"/>.</summary>
    public bool IsReleased => Volatile.Read(ref _released) != 0;

    /// <summary><c>ctx->mmap_changing</c>: a non-cooperative event is posted and not yet read (resolutions answer EAGAIN).</summary>
    public bool MappingsChanging => Volatile.Read(ref _mappingsChanging) > 0;

    /// <summary>Faults blocked on this channel, read or not.</summary>
    public int WaitingFaults => Volatile.Read(ref _waiting);

    /// <summary>True when <paramref name="feature"/> was asked for.</summary>
    public bool Has(UserFaultFeatures feature) => (Features & feature) != 0;

    /// <summary>
    /// Queues a blocked fault: readers see its message from now on (<c>__add_wait_queue</c> on
    /// <c>fault_pending_wqh</c>). Followed by a full fence, so the caller's re-check of the page table
    /// (<c>userfaultfd_must_wait</c>) reads after the waiter is visible to a resolution's wake.
    /// </summary>
    public void Enqueue(UserFaultWaiter waiter)
    {
        lock (_lock)
        {
            _waiters.Add(waiter);
            _unread.Enqueue(waiter);
            waiter.IsQueued = true;
            _waiting++;
            SignalReadersLocked();
        }
        // Pairs with the full fence of Wake after a resolution's PTE store (set_current_state's smp_mb).
        Interlocked.MemoryBarrier();
    }

    /// <summary>Takes a waiter off the lists without waking it (it gave up, or need not wait).</summary>
    public void Withdraw(UserFaultWaiter waiter)
    {
        lock (_lock)
        {
            RemoveLocked(waiter);
        }
    }

    /// <summary>
    /// <c>wake_userfault</c>: wakes every fault whose address lies in [<paramref name="start"/>, + <paramref name="length"/>)
    /// (every fault when <paramref name="length"/> is 0). Called after the page-table change that resolves them.
    /// </summary>
    public int Wake(ulong start, ulong length)
    {
        // smp_mb: the caller's PTE store is visible before the count is read; pairs with Enqueue's fence, so either the
        // fault's re-check sees the new PTE or this sees the waiter.
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _waiting) == 0)
        {
            return 0;
        }
        int woken = 0;
        lock (_lock)
        {
            for (int i = _waiters.Count - 1; i >= 0; i--)
            {
                UserFaultWaiter waiter = _waiters[i];
                ulong address = waiter.Message.Address;
                if (length != 0 && (address < start || address - start >= length))
                {
                    continue;
                }
                RemoveLocked(waiter);
                waiter.Wake();
                woken++;
            }
        }
        return woken;
    }

    /// <summary>
    /// Posts a non-cooperative event (fork, remap, remove, unmap). Resolutions answer EAGAIN until a reader took it
    /// (<c>mmap_changing</c>); unlike Linux the poster does not wait for that.
    /// </summary>
    public void Post(UserFaultMessage message)
    {
        lock (_lock)
        {
            if (IsReleased)
            {
                return;
            }
            _events.Enqueue(message);
            Interlocked.Increment(ref _mappingsChanging);
            SignalReadersLocked();
        }
    }

    /// <summary>
    /// The prepare half of an event sent once its change is done (<c>userfaultfd_unmap_prep</c>,
    /// <c>mremap_userfaultfd_prep</c>): raises <c>mmap_changing</c> now, so resolutions answer EAGAIN from before the
    /// change until the event is read. <see cref="PostPrepared"/> follows.
    /// </summary>
    public void Prepare()
    {
        lock (_lock)
        {
            if (!IsReleased)
            {
                Interlocked.Increment(ref _mappingsChanging);
            }
        }
    }

    /// <summary>
    /// Posts an event whose <see cref="Prepare"/> already raised <c>mmap_changing</c> (nothing when the channel was
    /// released meanwhile: the release reset the count and drops events).
    /// </summary>
    public void PostPrepared(UserFaultMessage message)
    {
        lock (_lock)
        {
            if (IsReleased)
            {
                return;
            }
            _events.Enqueue(message);
            SignalReadersLocked();
        }
    }

    /// <summary>
    /// <c>userfaultfd_ctx_read</c> without blocking: the oldest unread fault still waiting, else the oldest event.
    /// </summary>
    public bool TryRead(out UserFaultMessage message)
    {
        // Unlocked fast check: pairs with UpdateReadableLocked's release store; a stale non-zero is re-checked under the lock.
        if (Volatile.Read(ref _readable) == 0)
        {
            message = default;
            return false;
        }
        lock (_lock)
        {
            return TryReadLocked(out message);
        }
    }

    /// <summary>
    /// Blocking read: polls briefly (yielding), then sleeps until a message, the channel's release (false) or cancellation
    /// (<see cref="OperationCanceledException"/>).
    /// </summary>
    public bool Read(CancellationToken cancellation, out UserFaultMessage message)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < s_spinTicks)
        {
            if (TryRead(out message))
            {
                return true;
            }
            if (IsReleased)
            {
                return false;
            }
            // As a blocked fault does (UserFaultWaiter): yield, so the faulting thread can run on this core.
            Thread.Yield();
        }
        using CancellationTokenRegistration registration = cancellation.CanBeCanceled
            ? cancellation.Register(static state => ((UserFaultContext)state!).PulseReaders(), this)
            : default;
        lock (_lock)
        {
            while (true)
            {
                if (TryReadLocked(out message))
                {
                    return true;
                }
                if (IsReleased)
                {
                    return false;
                }
                cancellation.ThrowIfCancellationRequested();
                _sleepingReaders++;
                Monitor.Wait(_lock);
                _sleepingReaders--;
            }
        }
    }

    /// <summary>Asynchronous read: completes with a message, or null once the channel is released.</summary>
    public async ValueTask<UserFaultMessage?> ReadAsync(CancellationToken cancellation)
    {
        while (true)
        {
            Task signal;
            lock (_lock)
            {
                if (TryReadLocked(out UserFaultMessage message))
                {
                    return message;
                }
                if (IsReleased)
                {
                    return null;
                }
                _asyncSignal ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                signal = _asyncSignal.Task;
            }
            await signal.WaitAsync(cancellation).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// <c>userfaultfd_release</c>'s first half: marks the channel closed (faults from now on retry and are handled as
    /// unregistered once the caller cleared the VMAs) and wakes readers; the caller then clears the VMAs and
    /// <see cref="Wake"/>s every fault.
    /// </summary>
    public void MarkReleased()
    {
        lock (_lock)
        {
            Volatile.Write(ref _released, 1);
            _events.Clear();
            Volatile.Write(ref _mappingsChanging, 0);
            SignalReadersLocked();
        }
    }

    private bool TryReadLocked(out UserFaultMessage message)
    {
        while (_unread.TryDequeue(out UserFaultWaiter? waiter))
        {
            if (waiter.IsQueued)
            {
                // Refiled to fault_wqh: still waiting, no longer offered.
                waiter.IsRead = true;
                message = waiter.Message;
                UpdateReadableLocked();
                return true;
            }
        }
        if (_events.TryDequeue(out message))
        {
            Interlocked.Decrement(ref _mappingsChanging);
            UpdateReadableLocked();
            return true;
        }
        UpdateReadableLocked();
        message = default;
        return false;
    }

    private void RemoveLocked(UserFaultWaiter waiter)
    {
        if (!waiter.IsQueued)
        {
            return;
        }
        // An unread waiter's entry stays in the unread queue and is skipped there.
        waiter.IsQueued = false;
        _waiters.Remove(waiter);
        _waiting--;
    }

    // The hint TryRead checks without the lock: entries that may be read (withdrawn faults included until skipped).
    // Written under the lock; a reader that misses a new value takes the lock on its next try or sleeps on it.
    private void UpdateReadableLocked() => Volatile.Write(ref _readable, _unread.Count + _events.Count);

    private void SignalReadersLocked()
    {
        UpdateReadableLocked();
        if (_sleepingReaders > 0)
        {
            Monitor.PulseAll(_lock);
        }
        if (_asyncSignal is { } signal)
        {
            _asyncSignal = null;
            signal.TrySetResult();
        }
    }

    private void PulseReaders()
    {
        lock (_lock)
        {
            Monitor.PulseAll(_lock);
        }
    }
}
