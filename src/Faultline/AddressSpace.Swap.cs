namespace Faultline;

/// <summary>The swap figures of the guest RAM (<c>/proc/meminfo</c>'s <c>SwapTotal</c>, <c>SwapFree</c>, <c>SwapCached</c>).</summary>
public sealed partial class AddressSpace
{
    /// <summary>
    /// <c>SwapTotal</c>: bytes of swap the guest RAM has (<see cref="FaultlineOptions.Swap"/> less its header page), 0
    /// without swap. Shared by every address space over the same RAM. Thread-safe.
    /// </summary>
    public long SwapTotalBytes => (Live.Node?.Swap.TotalPages ?? 0) * PageGeometry.PageSize;

    /// <summary><c>SwapFree</c>: bytes of swap not holding a page now (a snapshot). Thread-safe.</summary>
    public long SwapFreeBytes => (Live.Node?.Swap.FreePages ?? 0) * PageGeometry.PageSize;

    /// <summary>
    /// <c>SwapCached</c>: bytes of pages in memory that also have a swap slot (being written out, just read in, or shared
    /// by forked address spaces' entries). A snapshot; thread-safe.
    /// </summary>
    public long SwapCachedBytes => (Live.Node?.Swap.CachedPages ?? 0) * PageGeometry.PageSize;

    // A fork that ran out of frames for the child's tables: with a swap area, direct reclaim (no lock held) and another
    // attempt, a bounded number of times, as the allocator retries after reclaim before it fails.
    private bool ReclaimForRetry(int attempt) => attempt < 16 && Live.Node?.DirectReclaim() == true;
}
