namespace Faultline;

/// <summary>
/// The system-wide transparent huge page mode, as written to <c>/sys/kernel/mm/transparent_hugepage/enabled</c>
/// (<see cref="FaultlineOptions.TransparentHugePages"/>): which private anonymous mappings may be backed by 2 MiB pages.
/// </summary>
public enum TransparentHugePageMode
{
    /// <summary><c>always</c>: every eligible mapping unless it is marked <see cref="Advice.NoHugePage"/>.</summary>
    Always,
    /// <summary><c>madvise</c>: only mappings marked <see cref="Advice.HugePage"/>.</summary>
    Madvise,
    /// <summary><c>never</c>: none; <see cref="Advice.HugePage"/> is still accepted and recorded.</summary>
    Never,
}
