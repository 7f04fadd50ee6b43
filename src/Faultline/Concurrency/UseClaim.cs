namespace Faultline.Concurrency;

/// <summary>
/// The thread inside a Cpu's slow path (TLB miss, fault, detach), published in one word: 0 when none, else the
/// managed thread id. It catches a second thread using the Cpu while the first is inside, and it is what an address
/// space being torn down waits on before it releases guest memory (<c>MemoryDescriptor.Dispose</c>).
/// </summary>
/// <remarks>
/// Claiming is a plain release store followed by the owner's read of the address space's exit mark, with no fence
/// between them; the tearing-down thread pays instead, with a process-wide barrier between setting that mark and
/// reading the claims (the asymmetric pairing of <see cref="RcuDomain.Synchronize()"/>). So either the teardown
/// sees the claim and waits for it, or the owner's read comes after the barrier and sees the mark. Detection of a
/// second thread is a check before the store: it always catches a thread arriving while another is inside (faults
/// are long), not two threads arriving in the same instant.
/// </remarks>
internal sealed class UseClaim
{
    private int _holder;

    /// <summary>The thread holding the claim, or 0: an acquire read, pairing with <see cref="Exit"/>'s release store.</summary>
    public int Holder => Volatile.Read(ref _holder);

    /// <summary>
    /// Claims for <paramref name="thread"/>; false (nothing changed) when another thread holds it. The caller reads the
    /// exit mark next and gives the claim back if it is set.
    /// </summary>
    public bool TryEnter(int thread)
    {
        if (Holder != 0)
        {
            return false;
        }
        // No fence before the caller's read of the exit mark: the teardown's process-wide barrier pairs with this store.
        Volatile.Write(ref _holder, thread);
        return true;
    }

    /// <summary>Gives the claim back: a release store, so everything done under it precedes a waiter's return.</summary>
    public void Exit() => Volatile.Write(ref _holder, 0);

    /// <summary>
    /// Waits until no thread holds the claim. The caller set the exit mark and issued the process-wide barrier first,
    /// so a thread claiming after this returns sees the mark and touches nothing.
    /// </summary>
    public void WaitUntilFree()
    {
        var spinner = new SpinWait();
        while (Holder != 0)
        {
            spinner.SpinOnce();
        }
    }
}
