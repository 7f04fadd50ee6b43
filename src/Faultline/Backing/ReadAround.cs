namespace Faultline.Backing;

/// <summary>
/// How much of a file a fault that misses the page cache reads in beside its page (<c>do_sync_mmap_readahead</c>): the
/// VMA's access advice decides it.
/// </summary>
internal enum ReadAround
{
    /// <summary><c>VM_RAND_READ</c> (MADV_RANDOM): only the faulting page.</summary>
    None,
    /// <summary>No advice: <c>ra_pages</c> centred on the faulting page (read-around).</summary>
    Around,
    /// <summary><c>VM_SEQ_READ</c> (MADV_SEQUENTIAL): <c>ra_pages</c> from the faulting page on.</summary>
    Sequential,
}
