using Faultline.Areas;

namespace Faultline.Syscalls;

/// <summary>A VMA held by <see cref="UserFaultVmaLock.Lock"/>: by its own read lock, or by the mmap read lock.</summary>
internal readonly struct UserFaultHeldVma
{
    /// <summary>Holds <paramref name="vma"/>; <paramref name="mmapLocked"/> says by which lock.</summary>
    public UserFaultHeldVma(Vma vma, bool mmapLocked)
    {
        Vma = vma;
        MmapLocked = mmapLocked;
    }

    /// <summary>The VMA.</summary>
    public Vma Vma { get; }

    /// <summary>True when the mmap read lock holds it (the channel's lookup context was in use), false for its own read lock.</summary>
    public bool MmapLocked { get; }
}
