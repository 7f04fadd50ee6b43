namespace Faultline;

/// <summary>
/// Features of a <see cref="UserFaultChannel"/>, chosen when it is created (<c>UFFD_FEATURE_*</c> of
/// <c>UFFDIO_API</c>, kernel values). Faults on missing shared memory, minor faults on shared memory and the faulting
/// thread's id are always delivered, and moves always offered, so their features are accepted and change nothing.
/// </summary>
[Flags]
public enum UserFaultFeatures : ulong
{
    /// <summary>Page faults only.</summary>
    None = 0,
    /// <summary><c>UFFD_FEATURE_EVENT_FORK</c>: a fork keeps the registrations in the child, under a new channel the <see cref="UserFaultEventKind.Fork"/> event carries.</summary>
    EventFork = 1 << 1,
    /// <summary><c>UFFD_FEATURE_EVENT_REMAP</c>: mremap moving a registered range keeps it registered and sends <see cref="UserFaultEventKind.Remap"/>.</summary>
    EventRemap = 1 << 2,
    /// <summary><c>UFFD_FEATURE_EVENT_REMOVE</c>: MADV_DONTNEED, MADV_FREE and MADV_REMOVE of a registered range send <see cref="UserFaultEventKind.Remove"/>.</summary>
    EventRemove = 1 << 3,
    /// <summary><c>UFFD_FEATURE_MISSING_SHMEM</c>: missing faults of shared memory (always on).</summary>
    MissingShmem = 1 << 5,
    /// <summary>
    /// <c>UFFD_FEATURE_EVENT_UNMAP</c>: an unmap of a registered range sends <see cref="UserFaultEventKind.Unmap"/> (munmap, a
    /// <see cref="MapFlags.Fixed"/> map over it, an mremap's shrink, source or destination, a brk shrink).
    /// </summary>
    EventUnmap = 1 << 6,
    /// <summary><c>UFFD_FEATURE_SIGBUS</c>: a fault in a registered range is not delivered; the access gets SIGBUS at once.</summary>
    SigBus = 1 << 7,
    /// <summary><c>UFFD_FEATURE_THREAD_ID</c>: the faulting thread's id in the event (always filled).</summary>
    ThreadId = 1 << 8,
    /// <summary><c>UFFD_FEATURE_MINOR_SHMEM</c>: minor faults of shared memory (always on).</summary>
    MinorShmem = 1 << 10,
    /// <summary><c>UFFD_FEATURE_MOVE</c>: <see cref="UserFaultChannel.Move(ulong, ulong, ulong, UserFaultMoveFlags, out ulong)"/> is offered (always).</summary>
    Move = 1 << 16,
}
