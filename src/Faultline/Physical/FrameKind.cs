namespace Faultline.Physical;

/// <summary>What a frame holds (the kernel's page flags that matter here: <c>PG_anon</c>, page-table pages, the zero page).</summary>
internal enum FrameKind : byte
{
    /// <summary>On a free list.</summary>
    Free = 0,
    /// <summary>The shared zero frame (<c>ZERO_PAGE</c>), never written.</summary>
    Zero,
    /// <summary>Anonymous guest memory.</summary>
    Anonymous,
    /// <summary>A page-table page.</summary>
    PageTable,
    /// <summary>A page owned by a backing (page cache): <see cref="FrameInfo.Mapping"/> names it.</summary>
    PageCache,
    /// <summary>Allocated, kind not yet set.</summary>
    Allocated,
    /// <summary>
    /// A page of shared memory (shmem: page cache that is swap-backed, <c>folio_test_swapbacked</c> on a file folio):
    /// <see cref="FrameInfo.Mapping"/> names its object; mappings count it as <c>MM_SHMEMPAGES</c>.
    /// </summary>
    Shmem,
}
