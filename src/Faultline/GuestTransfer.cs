namespace Faultline;

/// <summary>
/// How far a bulk copy between guest memory and a host buffer got, as <c>process_vm_readv</c> reports it: the bytes
/// copied before the first access that could not be resolved, and that access. The system call returns the byte count
/// when it is not zero and fails with <c>EFAULT</c> only when nothing was copied; <see cref="Outcome"/> says why a
/// short copy stopped in either case.
/// </summary>
/// <param name="BytesTransferred">Bytes copied, from the start of the first segment, in order.</param>
/// <param name="Outcome"><see cref="AccessOutcome.Ok"/> when everything was copied; else why the copy stopped.</param>
/// <param name="FaultAddress">The guest address whose access failed (the start of the first byte not copied); 0 when complete.</param>
public readonly record struct GuestTransfer(int BytesTransferred, AccessOutcome Outcome, ulong FaultAddress)
{
    /// <summary>True when every byte was copied.</summary>
    public bool IsComplete => Outcome == AccessOutcome.Ok;
}
