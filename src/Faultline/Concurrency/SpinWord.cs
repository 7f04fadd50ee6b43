namespace Faultline.Concurrency;

/// <summary>
/// A one-word spinlock (the kernel's <c>spinlock_t</c> as used for split page-table locks): 0 free, 1 held.
/// Trylock is what the speculative fault path must use inside a read section (SPF v11 review, 2018-05: never block there).
/// </summary>
internal static class SpinWord
{
    /// <summary><c>spin_trylock</c>: one CAS; acquire on success.</summary>
    public static bool TryEnter(ref int word) =>
        Volatile.Read(ref word) == 0 && Interlocked.CompareExchange(ref word, 1, 0) == 0;

    /// <summary><c>spin_lock</c>: spins with back-off, then yields the processor so an oversubscribed holder runs.</summary>
    public static void Enter(ref int word)
    {
        if (TryEnter(ref word))
        {
            return;
        }
        var spinner = new SpinWait();
        do
        {
            spinner.SpinOnce(sleep1Threshold: -1);
        }
        while (!TryEnter(ref word));
    }

    /// <summary><c>spin_unlock</c>: a release store, so every write under the lock is visible to the next holder.</summary>
    public static void Exit(ref int word) => Volatile.Write(ref word, 0);

    /// <summary>True while held (for assertions).</summary>
    public static bool IsHeld(ref int word) => Volatile.Read(ref word) != 0;
}
