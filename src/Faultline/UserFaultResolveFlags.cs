namespace Faultline;

/// <summary>
/// Modes of a <see cref="UserFaultChannel"/> resolution (<c>UFFDIO_COPY_MODE_*</c>, <c>UFFDIO_ZEROPAGE_MODE_*</c>,
/// <c>UFFDIO_CONTINUE_MODE_*</c>; kernel values).
/// </summary>
[Flags]
public enum UserFaultResolveFlags
{
    /// <summary>Map, then wake the faults waiting in the range.</summary>
    None = 0,
    /// <summary><c>*_MODE_DONTWAKE</c>: map without waking; a later <see cref="UserFaultChannel.Wake"/> wakes.</summary>
    DontWake = 1,
    /// <summary><c>*_MODE_WP</c>: map the page write-protected for the channel (the range must be registered for <see cref="UserFaultModes.WriteProtect"/>).</summary>
    WriteProtect = 2,
}
