namespace Faultline;

/// <summary>What a <see cref="UserFaultChannel"/> range is registered for (<c>UFFDIO_REGISTER_MODE_*</c>, kernel values).</summary>
[Flags]
public enum UserFaultModes
{
    /// <summary>Nothing (not a valid registration).</summary>
    None = 0,
    /// <summary><c>UFFDIO_REGISTER_MODE_MISSING</c>: a fault on a page that is not there (private or shared anonymous memory).</summary>
    Missing = 1,
    /// <summary><c>UFFDIO_REGISTER_MODE_WP</c>: a write to a page the channel write-protected (private anonymous memory).</summary>
    WriteProtect = 2,
    /// <summary><c>UFFDIO_REGISTER_MODE_MINOR</c>: a fault on a shared-memory page that is cached but not mapped here.</summary>
    Minor = 4,
}
