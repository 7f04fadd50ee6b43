using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// A theory that needs the host kernel's own dirty log: skipped, with the reason, on a kernel without
/// <c>PAGEMAP_SCAN</c> (Linux 6.7) or asynchronous userfaultfd write protection (probed when the tests are discovered:
/// <see cref="HostWrittenPageScan.Supported"/>).
/// </summary>
public sealed class HostPagemapScanTheoryAttribute : TheoryAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host has no <c>PAGEMAP_SCAN</c> dirty log.</summary>
    public HostPagemapScanTheoryAttribute()
    {
        if (!HostWrittenPageScan.Supported)
        {
            Skip = "the host kernel has no PAGEMAP_SCAN with asynchronous userfaultfd write protection (Linux 6.7+)";
        }
    }
}
