namespace Faultline;

/// <summary>What a <see cref="UserFaultEvent"/> reports (<c>UFFD_EVENT_*</c>, kernel values).</summary>
public enum UserFaultEventKind
{
    /// <summary><c>UFFD_EVENT_PAGEFAULT</c>: a Cpu is blocked on a fault in a registered range.</summary>
    PageFault = 0x12,
    /// <summary><c>UFFD_EVENT_FORK</c>: the address space forked; <see cref="UserFaultEvent.Child"/> serves the child's registrations.</summary>
    Fork = 0x13,
    /// <summary><c>UFFD_EVENT_REMAP</c>: mremap moved [<see cref="UserFaultEvent.Address"/>, + <see cref="UserFaultEvent.Length"/>) to <see cref="UserFaultEvent.To"/>.</summary>
    Remap = 0x14,
    /// <summary><c>UFFD_EVENT_REMOVE</c>: the pages of [<see cref="UserFaultEvent.Address"/>, <see cref="UserFaultEvent.End"/>) are being discarded (madvise).</summary>
    Remove = 0x15,
    /// <summary><c>UFFD_EVENT_UNMAP</c>: [<see cref="UserFaultEvent.Address"/>, <see cref="UserFaultEvent.End"/>) was unmapped.</summary>
    Unmap = 0x16,
}
