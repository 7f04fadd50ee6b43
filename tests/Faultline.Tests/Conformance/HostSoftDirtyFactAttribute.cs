using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// A fact that needs the host kernel's soft-dirty tracking: skipped, with the reason, on a kernel built without
/// <c>CONFIG_MEM_SOFT_DIRTY</c> (probed when the tests are discovered: <see cref="HostSoftDirty.Supported"/>).
/// </summary>
public sealed class HostSoftDirtyFactAttribute : FactAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host has no soft-dirty tracking.</summary>
    public HostSoftDirtyFactAttribute()
    {
        if (!HostSoftDirty.Supported)
        {
            Skip = "the host kernel has no soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY off: a page written after "
                + "clear_refs 4 does not read bit 55 in /proc/self/pagemap)";
        }
    }
}
