namespace Faultline;

/// <summary>
/// How a plain TLB hit leaves its Cpu's read section (<c>rcu_read_unlock</c> inlined): the section word and what to
/// publish there ("outside", or "inside" again while a scope is open), both read before the hit's first store so the
/// JIT keeps them in registers across it.
/// </summary>
internal readonly unsafe struct SectionExit(long* section, long word)
{
    /// <summary>Leaves the section: a release store, after the access it ends.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Leave() => Volatile.Write(ref *section, word);
}
