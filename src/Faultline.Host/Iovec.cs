using System.Runtime.InteropServices;

namespace Faultline.Host;

/// <summary>The C <c>struct iovec</c> (base pointer + length) used by process_vm_readv/writev.</summary>
/// <param name="Base">Start of the buffer.</param>
/// <param name="Length">Length of the buffer in bytes.</param>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct Iovec(nint Base, nuint Length);
