namespace Faultline;

/// <summary><c>msync</c> flags (<c>MS_*</c>, Linux values).</summary>
[Flags]
public enum SyncFlags
{
    /// <summary>No flag: accepted, as on Linux.</summary>
    None = 0,
    /// <summary><c>MS_ASYNC</c>: schedule write-back; a hole is ENOMEM at once.</summary>
    Async = 1,
    /// <summary><c>MS_INVALIDATE</c>: EBUSY over locked memory.</summary>
    Invalidate = 2,
    /// <summary><c>MS_SYNC</c>: write back and wait (nothing to write for anonymous memory).</summary>
    Sync = 4,
}
