namespace Faultline.Syscalls;

/// <summary>What <see cref="UserFaultFill.Fill"/> puts in each page (the kernel's <c>MFILL_ATOMIC_*</c> modes).</summary>
internal enum UserFaultFillKind
{
    /// <summary><c>MFILL_ATOMIC_COPY</c>: the given bytes.</summary>
    Copy,
    /// <summary><c>MFILL_ATOMIC_ZEROPAGE</c>: zeros (the zero page where the address space maps it).</summary>
    ZeroPage,
    /// <summary><c>MFILL_ATOMIC_CONTINUE</c>: the shared-memory page already cached.</summary>
    Continue,
}
