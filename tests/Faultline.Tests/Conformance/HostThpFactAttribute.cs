using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// A fact that needs transparent huge pages in the host kernel: skipped, with the reason, where
/// <see cref="HostTransparentHugePages.Mode"/> finds none.
/// </summary>
public sealed class HostThpFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host kernel has no THP.</summary>
    public HostThpFactAttribute()
    {
        if (HostTransparentHugePages.Mode is null)
        {
            Skip = "the host kernel has no transparent huge pages (no /sys/kernel/mm/transparent_hugepage/enabled)";
        }
    }
}
