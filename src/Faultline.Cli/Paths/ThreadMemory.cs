namespace Faultline.Cli.Paths;

/// <summary>
/// The data plane of one worker thread. The bulk operations keep the per-page loop inside the path (no virtual call
/// per page); the single-word ones serve workloads with irregular access (ebizzy's searches).
/// </summary>
internal abstract class ThreadMemory : IDisposable
{
    /// <summary>
    /// Writes <see cref="Stamp.Of"/> (8 bytes) into 64-bit word <paramref name="word"/> (0 is the start) of each of
    /// <paramref name="pages"/> pages.
    /// </summary>
    public abstract void StampPages(ulong address, long pages, long salt, int word = 0);

    /// <summary>Reads the stamps back; returns the number of pages whose stamp is wrong and the first such page.</summary>
    public abstract long VerifyPages(ulong address, long pages, long salt, out ulong firstBad, int word = 0);

    /// <summary>Stores a 64-bit value.</summary>
    public abstract void StoreLong(ulong address, long value);

    /// <summary>Loads a 64-bit value.</summary>
    public abstract long LoadLong(ulong address);

    /// <summary>Detaches.</summary>
    public virtual void Dispose()
    {
    }
}

/// <summary>The value written at a page: a function of its address and a per-iteration salt, never zero.</summary>
internal static class Stamp
{
    /// <summary>The stamp of the page at <paramref name="address"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static long Of(ulong address, long salt) => (long)((address * 0x9E3779B97F4A7C15UL) ^ (ulong)salt) | 1;
}
