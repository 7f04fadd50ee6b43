namespace Faultline;

/// <summary>
/// A range of guest addresses for a vectored copy: the remote <c>struct iovec</c> of <c>process_vm_readv</c> and
/// <c>process_vm_writev</c>.
/// </summary>
/// <param name="Address">The first guest address.</param>
/// <param name="Length">Bytes in the range; 0 is allowed and copies nothing.</param>
public readonly record struct GuestSegment(ulong Address, int Length);
