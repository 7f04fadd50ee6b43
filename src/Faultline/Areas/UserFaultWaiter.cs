namespace Faultline.Areas;

/// <summary>
/// A fault blocked on a user-fault channel (the kernel's <c>struct userfaultfd_wait_queue</c> on the faulting
/// thread's stack): its message, and the flag a resolution sets to wake it. Polls briefly (yielding), then sleeps.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="Wake"/> from any thread, once; <see cref="Wait"/> by the faulting thread only.
/// <see cref="IsRead"/> and <see cref="IsQueued"/> are guarded by the channel's lock.
/// </remarks>
internal sealed class UserFaultWaiter
{
    // A resolution usually arrives within a few microseconds (another thread reads, copies, wakes): poll that long,
    // yielding, before paying for a sleep and a wake-up.
    private static readonly long s_spinTicks = Stopwatch.Frequency / 50_000;

    private int _woken;
    private bool _sleeping;

    /// <summary>A waiter on <paramref name="context"/> for <paramref name="message"/>.</summary>
    public UserFaultWaiter(UserFaultContext context, UserFaultMessage message)
    {
        Context = context;
        Message = message;
    }

    /// <summary>The channel it waits on.</summary>
    public UserFaultContext Context { get; }

    /// <summary>What the reader is told.</summary>
    public UserFaultMessage Message { get; }

    /// <summary>True once read from the channel (moved from <c>fault_pending_wqh</c> to <c>fault_wqh</c>).</summary>
    public bool IsRead { get; set; }

    /// <summary>True while on the channel's list of waiting faults.</summary>
    public bool IsQueued { get; set; }

    /// <summary>True once woken (<c>uwq->waken</c>).</summary>
    public bool IsWoken => Volatile.Read(ref _woken) != 0;

    /// <summary><c>userfaultfd_wake_function</c>: wakes the faulting thread.</summary>
    public void Wake()
    {
        // The release store pairs with the acquire read of the spin; the lock with the sleeper's check.
        Volatile.Write(ref _woken, 1);
        lock (this)
        {
            if (_sleeping)
            {
                Monitor.Pulse(this);
            }
        }
    }

    /// <summary>Waits until woken or <paramref name="timeout"/> passes (infinite when negative); false on timeout.</summary>
    public bool Wait(TimeSpan timeout)
    {
        long start = Stopwatch.GetTimestamp();
        while (Stopwatch.GetTimestamp() - start < s_spinTicks)
        {
            if (IsWoken)
            {
                return true;
            }
            // Yield, not a busy spin: where runnable threads outnumber cores, the thread that will answer may need this one.
            Thread.Yield();
        }
        long deadline = timeout < TimeSpan.Zero ? long.MaxValue : start + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        lock (this)
        {
            _sleeping = true;
            try
            {
                while (!IsWoken)
                {
                    long left = deadline - Stopwatch.GetTimestamp();
                    if (left <= 0)
                    {
                        return false;
                    }
                    int milliseconds = deadline == long.MaxValue ? Timeout.Infinite
                        : (int)Math.Min(int.MaxValue, Math.Max(1, left * 1000 / Stopwatch.Frequency));
                    Monitor.Wait(this, milliseconds);
                }
                return true;
            }
            finally
            {
                _sleeping = false;
            }
        }
    }
}
