namespace Faultline;

/// <summary>
/// A failed <c>mmap</c>, <c>munmap</c>, <c>mprotect</c> or <c>mremap</c> (or another address-space operation), carrying Linux's errno and
/// the call's arguments: the message reads like an strace line, e.g.
/// <c>mmap(0x10000, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED) failed: EPERM (Operation not permitted)</c>.
/// </summary>
/// <remarks>
/// The operation changed nothing (Faultline validates before it edits). Each <c>Try*</c> method of
/// <see cref="AddressSpace"/> returns the same errno instead of throwing. Immutable once thrown.
/// </remarks>
public sealed class MemoryOperationException : Exception
{
    /// <summary>Creates the exception for <paramref name="operation"/> called with the given arguments (null: the call has none such).</summary>
    public MemoryOperationException(string operation, Errno error, ulong? address = null, ulong? length = null,
        Protection? protection = null, MapFlags? flags = null)
        : base(SyscallText.Call(operation, address, length, protection, flags) + " failed: " + SyscallText.Error(error))
    {
        Operation = operation;
        Error = error;
        Address = address;
        Length = length;
        Protection = protection;
        Flags = flags;
    }

    /// <summary>
    /// Creates the exception for a call whose arguments <paramref name="call"/> already spells (<c>mremap</c>: see
    /// <see cref="SyscallText.RemapCall"/>); <paramref name="address"/> and <paramref name="length"/> are its first two.
    /// </summary>
    internal MemoryOperationException(string operation, Errno error, string call, ulong address, ulong length)
        : base(call + " failed: " + SyscallText.Error(error))
    {
        Operation = operation;
        Error = error;
        Address = address;
        Length = length;
    }

    /// <summary>The system call's name: <c>mmap</c>, <c>munmap</c>, <c>mprotect</c>, <c>mremap</c>.</summary>
    public string Operation { get; }

    /// <summary>The errno.</summary>
    public Errno Error { get; }

    /// <summary>The address argument as given (before any alignment), or null.</summary>
    public ulong? Address { get; }

    /// <summary>The length argument in bytes as given, or null.</summary>
    public ulong? Length { get; }

    /// <summary>The protection argument (<c>mmap</c>, <c>mprotect</c>), or null.</summary>
    public Protection? Protection { get; }

    /// <summary>The flags argument (<c>mmap</c>), or null.</summary>
    public MapFlags? Flags { get; }
}
