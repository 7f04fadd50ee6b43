using Faultline.Mm;

namespace Faultline;

/// <summary>The background huge-page collapse of an address space (<c>khugepaged</c>).</summary>
public sealed partial class AddressSpace
{
    private Khugepaged? _khugepaged;

    /// <summary>
    /// <c>khugepaged/full_scans</c>: passes the background collapse has made over this address space (0 without
    /// <see cref="FaultlineOptions.HugePageCollapsePeriod"/>). Thread-safe.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The address space was disposed (the worker has stopped).</exception>
    public long HugePageCollapseScans
    {
        get
        {
            ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
            return _khugepaged?.FullScans ?? 0;
        }
    }

    // Starts khugepaged when the options ask for it; called last in the constructor.
    private void StartHugePageCollapse()
    {
        if (Options.HugePageCollapsePeriod is not { } period)
        {
            return;
        }
        if (period <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(Options), "HugePageCollapsePeriod must be positive");
        }
        _khugepaged = new Khugepaged(_mm, this, period);
    }

    // Ends khugepaged before the address space is torn down; a second call does nothing.
    private void StopHugePageCollapse() => Interlocked.Exchange(ref _khugepaged, null)?.Stop();
}
