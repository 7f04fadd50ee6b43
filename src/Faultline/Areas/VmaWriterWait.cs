namespace Faultline.Areas;

/// <summary>
/// Where the one writer of an address space sleeps while readers drain from a VMA it is write-locking (the kernel's
/// <c>mm->vma_writer_wait</c>, an <c>rcuwait</c>). There is at most one waiter, the holder of the mmap write lock.
/// </summary>
/// <remarks>
/// No lost wake-up: the writer clears the event, then re-reads the refcount, then sleeps; a reader decrements the
/// refcount (a full fence) and then sets the event. If the reader's set came before the writer's clear, the
/// decrement also came before, and the writer's re-read sees it; otherwise the set wakes the sleep.
/// </remarks>
internal sealed class VmaWriterWait
{
    private readonly ManualResetEventSlim _event = new(false, spinCount: 50);

    /// <summary>Writers that had to sleep, for tests and diagnostics.</summary>
    public long Sleeps;

    /// <summary>Waits until <paramref name="refCount"/> reads <paramref name="target"/>.</summary>
    public void WaitFor(ref int refCount, int target)
    {
        var spinner = new SpinWait();
        for (int i = 0; i < 20; i++)
        {
            if (Volatile.Read(ref refCount) == target)
            {
                return;
            }
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        while (true)
        {
            _event.Reset();
            if (Volatile.Read(ref refCount) == target)
            {
                return;
            }
            Interlocked.Increment(ref Sleeps);
            _event.Wait();
        }
    }

    /// <summary>Wakes the waiting writer (<c>rcuwait_wake_up</c>).</summary>
    public void Wake() => _event.Set();
}
