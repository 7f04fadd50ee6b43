namespace Faultline.Physical;

/// <summary>
/// The frame numbers of host memory mapped into a guest (<c>VM_PFNMAP</c>, <c>remap_pfn_range</c>): a window of the
/// page-frame space above every arena, where frame <see cref="FirstFrame"/> + <c>n</c> is the host page at address
/// <c>n</c> × 4 KiB. Such a frame has no <see cref="FrameInfo"/> (the kernel's pfn without a <c>struct page</c>): it is
/// never refcounted, mapped-counted, freed or reverse-mapped, and page-table entries carry it with
/// the special bit set, like the zero frame.
/// </summary>
/// <remarks>
/// The encoding needs no registry: translating a window frame back to its host address is a subtraction and a
/// shift, which the TLB fill does on its miss path (the hit path reads the host address the fill cached, as for guest
/// RAM). An arena holds at most 2^31 frames, far below the window, and a host address below 2^51 fits the 40-bit frame
/// field of an entry.
/// </remarks>
internal static unsafe class HostWindow
{
    /// <summary>The frame number of host address 0 (bit 39 of the frame field, PTE bit 51).</summary>
    public const long FirstFrame = 1L << 39;

    /// <summary>The first host address the window cannot name.</summary>
    public const ulong AddressLimit = 1UL << 51;

    /// <summary>True when <paramref name="pfn"/> names host memory rather than an arena frame.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool Contains(long pfn) => pfn >= FirstFrame;

    /// <summary>The window frame of the page-aligned host address <paramref name="hostPage"/>.</summary>
    public static long FrameOf(nint hostPage)
    {
        Debug.Assert(((ulong)hostPage & PageGeometry.PageOffsetMask) == 0 && (ulong)hostPage < AddressLimit);
        return FirstFrame + (long)((ulong)hostPage >> PageGeometry.PageShift);
    }

    /// <summary>The host address of window frame <paramref name="pfn"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static byte* Address(long pfn) => (byte*)((pfn - FirstFrame) << PageGeometry.PageShift);
}
