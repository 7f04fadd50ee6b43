using System.Runtime.InteropServices;

namespace Faultline.Physical;

/// <summary>
/// Owns the host reservation behind a <see cref="PhysicalMemory"/> arena, so an address space nobody disposed gives
/// its guest RAM back when the garbage collector finds it unreachable (a <see cref="SafeHandle"/> is finalized
/// even when its owner never is).
/// </summary>
/// <remarks>
/// Collection cannot release an arena in use: every entry point that touches guest memory reaches it through its
/// address space's descriptor and uses that descriptor again after its last access (the mmap-lock release in a
/// <c>finally</c>, a Cpu's read-section exit), which keeps the descriptor, its arena and this handle reachable.
/// </remarks>
internal sealed unsafe class ArenaHandle : SafeHandle
{
    private static long s_liveBytes;
    private readonly nuint _bytes;

    /// <summary>Reserves <paramref name="bytes"/> of lazily backed host memory.</summary>
    public ArenaHandle(nuint bytes) : base(0, ownsHandle: true)
    {
        _bytes = bytes;
        SetHandle((nint)HostPages.Reserve(bytes));
        Interlocked.Add(ref s_liveBytes, (long)bytes);
    }

    /// <summary>Bytes of host address space reserved by arenas not yet released, process-wide.</summary>
    public static long LiveBytes => Interlocked.Read(ref s_liveBytes);

    /// <summary>The first byte of the reservation.</summary>
    public byte* Base => (byte*)handle;

    /// <inheritdoc />
    public override bool IsInvalid => handle == 0;

    /// <inheritdoc />
    protected override bool ReleaseHandle()
    {
        bool released = HostPages.Release((byte*)handle, _bytes);
        Interlocked.Add(ref s_liveBytes, -(long)_bytes);
        return released;
    }
}
