using System.Runtime.InteropServices;

namespace Faultline.Tests.Support;

/// <summary>A page-aligned native buffer standing in for a framebuffer or device memory that a test maps into a guest.</summary>
internal sealed unsafe class HostBuffer : IDisposable
{
    /// <summary>Allocates <paramref name="pages"/> zeroed pages.</summary>
    public HostBuffer(int pages)
    {
        Length = pages * PageGeometry.PageSize;
        Pointer = (byte*)NativeMemory.AlignedAlloc((nuint)Length, PageGeometry.PageSize);
        Span.Clear();
    }

    /// <summary>The first byte.</summary>
    public byte* Pointer { get; }

    /// <summary>The address to map.</summary>
    public nint Address => (nint)Pointer;

    /// <summary>Bytes.</summary>
    public int Length { get; }

    /// <summary>The whole buffer.</summary>
    public Span<byte> Span => new(Pointer, Length);

    /// <summary>The 64-bit value at byte <paramref name="offset"/>.</summary>
    public long this[int offset]
    {
        get => *(long*)(Pointer + offset);
        set => *(long*)(Pointer + offset) = value;
    }

    /// <inheritdoc />
    public void Dispose() => NativeMemory.AlignedFree(Pointer);
}
