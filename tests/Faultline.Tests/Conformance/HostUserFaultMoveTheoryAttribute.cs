using Faultline.Host;
using Xunit;

namespace Faultline.Tests.Conformance;

/// <summary>
/// A theory that needs the host's <c>UFFDIO_MOVE</c>: skipped, with the reason, where userfaultfd is refused to this
/// user or the kernel is older than 6.8 (probed when the tests are discovered: <see cref="HostUserFaultMove.Supported"/>).
/// </summary>
public sealed class HostUserFaultMoveTheoryAttribute : TheoryAttribute
{
    /// <summary>Sets <see cref="FactAttribute.Skip"/> when the host has no usable <c>UFFDIO_MOVE</c>.</summary>
    public HostUserFaultMoveTheoryAttribute()
    {
        if (!HostUserFaultMove.Supported)
        {
            Skip = "the host offers no userfaultfd with UFFDIO_MOVE to this user (Linux 6.8+, vm.unprivileged_userfaultfd or UFFD_USER_MODE_ONLY)";
        }
    }
}
