namespace Faultline.Areas;

/// <summary>Outcome of <see cref="Vma.TryStartRead"/> (<c>vma_start_read</c>).</summary>
internal enum VmaReadLock
{
    /// <summary>Read-locked: the caller must <see cref="Vma.EndRead"/>.</summary>
    Locked,
    /// <summary>Write-locked by a writer (or a false "locked" after sequence wrap-around): fall back.</summary>
    WriteLocked,
    /// <summary>Detached (refcount 0): the lookup raced with a removal; look it up again (<c>VMA_LOCK_MISS</c>).</summary>
    Detached,
    /// <summary>Readers at <see cref="Vma.RefLimit"/> or a writer excluding readers: fall back.</summary>
    Busy,
}
