namespace Faultline;

/// <summary>Modes of <see cref="UserFaultChannel.Move(ulong, ulong, ulong, UserFaultMoveFlags, out ulong)"/> (<c>UFFDIO_MOVE_MODE_*</c>, kernel values).</summary>
[Flags]
public enum UserFaultMoveFlags
{
    /// <summary>Move, then wake the faults waiting in the destination.</summary>
    None = 0,
    /// <summary><c>UFFDIO_MOVE_MODE_DONTWAKE</c>: move without waking; a later <see cref="UserFaultChannel.Wake"/> wakes.</summary>
    DontWake = 1,
    /// <summary>
    /// <c>UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES</c>: a source page that is not mapped is skipped (and counted as moved)
    /// instead of ending the move with <see cref="Errno.ENOENT"/>.
    /// </summary>
    AllowSourceHoles = 2,
}
