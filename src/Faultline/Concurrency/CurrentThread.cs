namespace Faultline.Concurrency;

/// <summary>
/// The calling thread's managed id, kept in a thread-static: <see cref="Environment.CurrentManagedThreadId"/> is an
/// out-of-line call (about 2.5 ns on the 2-core test machine), a thread-static read is the runtime's TLS lookup and a
/// load (about 1.3 ns there). For the checks of the slow paths and of a scope's quiescent point, which run once per
/// TLB miss or per block of guest code.
/// </summary>
internal static class CurrentThread
{
    [ThreadStatic]
    private static int t_id;

    /// <summary>The managed thread id (never 0) of the calling thread.</summary>
    public static int Id
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get
        {
            int id = t_id;
            return id != 0 ? id : Initialize();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Initialize() => t_id = Environment.CurrentManagedThreadId;
}
