namespace Faultline.Host;

/// <summary>
/// A block of this process's address space reserved (PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS|
/// MAP_NORESERVE) so that oracle tests can run mmap/munmap/mprotect at fixed addresses inside it
/// without clobbering runtime memory. The whole block is unmapped on <see cref="Dispose"/>.
/// </summary>
/// <remarks>
/// <para>Placement: instead of letting the kernel choose (top-down, right next to the runtime's
/// own mappings) the region is put at the lowest 2 MiB-aligned gap at or above
/// <see cref="DefaultBase"/> (16 TiB) that also leaves <see cref="GuardSize"/> of unmapped space
/// on both sides, using MAP_FIXED_NOREPLACE. That achieves two things: (1) the region can never
/// merge with a PROT_NONE VMA made by the runtime, and (2) holes the tests punch into the region
/// are far below mmap_base, so the top-down allocator will not hand them to a runtime thread's
/// mmap. Readers still clip to the region, in case placement had to fall back to over-reserve and
/// trim.</para>
/// <para>Safety: every operation whose effect could reach outside [Start, End) is checked first.
/// Calls the kernel rejects before touching any VMA (length 0, unaligned address, overflow,
/// beyond TASK_SIZE) are passed through so their errno can be compared. Calls that would act
/// on memory outside the region throw <see cref="InvalidOperationException"/> instead.</para>
/// </remarks>
public sealed class HostRegion : IDisposable
{
    /// <summary>Where placement starts looking for a free gap (16 TiB, far below mmap_base).</summary>
    public const ulong DefaultBase = 0x1000_0000_0000;

    /// <summary>Unmapped space kept free on each side of the region (2 MiB).</summary>
    public const ulong GuardSize = Linux.HPAGE_PMD_SIZE;

    private static readonly object PlacementLock = new();
    private static readonly List<(ulong Start, ulong End)> LiveRegions = [];

    private bool _disposed;

    /// <summary>Reserves <paramref name="size"/> bytes (rounded up to a page) at a 2 MiB-aligned address.</summary>
    /// <param name="size">Bytes to reserve.</param>
    /// <param name="preferredBase">Lowest address to consider; <see cref="DefaultBase"/> if null.</param>
    public HostRegion(ulong size, ulong? preferredBase = null)
    {
        ArgumentOutOfRangeException.ThrowIfZero(size);
        size = (size + Linux.PAGE_SIZE - 1) & ~(Linux.PAGE_SIZE - 1);
        ulong start = 0;
        lock (PlacementLock)
        {
            for (int attempt = 0; attempt < 16 && start == 0; attempt++)
            {
                ulong gap = HostMaps.FindGap(preferredBase ?? DefaultBase, size + (2 * GuardSize), Linux.HPAGE_PMD_SIZE, LiveRegions);
                if (gap == 0)
                {
                    break;
                }

                ulong candidate = gap + GuardSize;
                int err = LibC.MmapErrno(candidate, size, Linux.PROT_NONE, ReserveFlags | Linux.MAP_FIXED_NOREPLACE, -1, 0, out ulong got);
                if (err == 0 && got == candidate)
                {
                    start = candidate;
                }
                else if (err == 0)
                {
                    // Pre-4.17 kernels ignore FIXED_NOREPLACE and treat it as a hint.
                    _ = LibC.MunmapErrno(got, size);
                }
            }

            if (start == 0)
            {
                start = ReserveAnywhereAligned(size);
            }

            LiveRegions.Add((start - GuardSize, start + size + GuardSize));
        }

        Start = start;
        End = start + size;
    }

    private const int ReserveFlags = Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_NORESERVE;

    /// <summary>First address of the region (2 MiB aligned).</summary>
    public ulong Start { get; }

    /// <summary>End of the region (exclusive).</summary>
    public ulong End { get; }

    /// <summary>Size of the region in bytes.</summary>
    public ulong Size => End - Start;

    /// <summary>True if [<paramref name="addr"/>, <paramref name="addr"/> + <paramref name="len"/>) lies inside the region.</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <returns>Whether the range is contained (an empty range is contained if addr is).</returns>
    public bool Contains(ulong addr, ulong len) => addr >= Start && addr <= End && len <= End - addr;

    /// <summary>
    /// mmap with prot/flags passed verbatim and fd -1 (so anonymous unless the caller omits
    /// MAP_ANONYMOUS on purpose to test the EBADF path). Without MAP_FIXED/MAP_FIXED_NOREPLACE the
    /// kernel may place the mapping anywhere; if it lands outside the region it is unmapped at once
    /// (the region cannot track it) but its address is still reported.
    /// </summary>
    /// <param name="addr">Address (fixed or hint).</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="prot">PROT_* bits.</param>
    /// <param name="flags">MAP_* bits.</param>
    /// <param name="mapped">The address the kernel returned, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public int Map(ulong addr, ulong len, int prot, int flags, out ulong mapped)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        bool fixedAddr = (flags & (Linux.MAP_FIXED | Linux.MAP_FIXED_NOREPLACE)) != 0;
        if (fixedAddr && !MmapRejectedUpFront(addr, len) && !Contains(addr, PageAlign(len)))
        {
            throw new InvalidOperationException(
                $"mmap(0x{addr:x}, 0x{len:x}) with MAP_FIXED would map outside region [0x{Start:x}, 0x{End:x}).");
        }

        int err = LibC.MmapErrno(addr, len, prot, flags, -1, 0, out mapped);
        if (err == 0 && !Contains(mapped, PageAlign(len)))
        {
            _ = LibC.MunmapErrno(mapped, len);
        }

        return err;
    }

    /// <summary>Same as <see cref="Map(ulong, ulong, int, int, out ulong)"/> without the address result.</summary>
    /// <param name="addr">Address (fixed or hint).</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="prot">PROT_* bits.</param>
    /// <param name="flags">MAP_* bits.</param>
    /// <returns>0 or the errno.</returns>
    public int Map(ulong addr, ulong len, int prot, int flags) => Map(addr, len, prot, flags, out _);

    /// <summary>munmap; ranges reaching mapped memory outside the region throw.</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <returns>0 or the errno.</returns>
    public int Unmap(ulong addr, ulong len)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        // do_vmi_munmap: EINVAL for unaligned start, start > TASK_SIZE, len > TASK_SIZE - start, len 0.
        bool rejected = (addr & (Linux.PAGE_SIZE - 1)) != 0 || addr > Linux.TASK_SIZE || len > Linux.TASK_SIZE - addr || len == 0;
        if (!rejected)
        {
            EnsureOutsideUnmapped(addr, PageAlign(len), "munmap");
        }

        return LibC.MunmapErrno(addr, len);
    }

    /// <summary>mprotect; ranges reaching mapped memory outside the region throw.</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="prot">PROT_* bits, passed verbatim.</param>
    /// <returns>0 or the errno.</returns>
    public int Protect(ulong addr, ulong len, int prot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!RangeRejectedUpFront(addr, len))
        {
            EnsureOutsideUnmapped(addr, PageAlign(len), "mprotect");
        }

        return LibC.MprotectErrno(addr, len, prot);
    }

    /// <summary>madvise; ranges reaching mapped memory outside the region throw.</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="advice">MADV_* value.</param>
    /// <returns>0 or the errno.</returns>
    public int Advise(ulong addr, ulong len, int advice)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!RangeRejectedUpFront(addr, len))
        {
            EnsureOutsideUnmapped(addr, PageAlign(len), "madvise");
        }

        return LibC.MadviseErrno(addr, len, advice);
    }

    /// <summary>mlock (mlock2 with flags); ranges reaching mapped memory outside the region throw.</summary>
    /// <param name="addr">Start address (rounded down to its page, as mlock does).</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="flags">MLOCK_* bits.</param>
    /// <returns>0 or the errno.</returns>
    public int Lock(ulong addr, ulong len, uint flags = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        EnsureWidenedInside(addr, len, "mlock");
        return LibC.MlockErrno(addr, len, flags);
    }

    /// <summary>munlock; ranges reaching mapped memory outside the region throw.</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <returns>0 or the errno.</returns>
    public int Unlock(ulong addr, ulong len)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        EnsureWidenedInside(addr, len, "munlock");
        return LibC.MunlockErrno(addr, len);
    }

    /// <summary>mincore (it changes nothing, so any range may be asked about).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="vec">One byte per page.</param>
    /// <returns>0 or the errno.</returns>
    public int Mincore(ulong addr, ulong len, Span<byte> vec)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return LibC.MincoreErrno(addr, len, vec);
    }

    /// <summary>msync (of anonymous memory it changes nothing).</summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="flags">MS_* bits.</param>
    /// <returns>0 or the errno.</returns>
    public int Msync(ulong addr, ulong len, int flags)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return LibC.MsyncErrno(addr, len, flags);
    }

    /// <summary>
    /// mseal; the range must lie in the region (a sealed VMA cannot be unmapped again, so the region's own
    /// <see cref="Dispose"/> leaves sealed parts mapped until the process exits).
    /// </summary>
    /// <param name="addr">Start address.</param>
    /// <param name="len">Length in bytes.</param>
    /// <param name="flags">Must be 0.</param>
    /// <returns>0 or the errno.</returns>
    public int Seal(ulong addr, ulong len, ulong flags = 0)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!RangeRejectedUpFront(addr, len) && !Contains(addr, PageAlign(len)))
        {
            throw new InvalidOperationException($"mseal(0x{addr:x}, 0x{len:x}) reaches outside region [0x{Start:x}, 0x{End:x}).");
        }

        return LibC.MsealErrno(addr, len, flags);
    }

    /// <summary>
    /// mremap; the old range and (with MREMAP_FIXED) the new range must lie in the region. A
    /// mapping the kernel moves outside the region is unmapped at once, its address still reported.
    /// </summary>
    /// <param name="oldAddr">Start of the mapping.</param>
    /// <param name="oldLen">Old length.</param>
    /// <param name="newLen">New length.</param>
    /// <param name="flags">MREMAP_* bits.</param>
    /// <param name="newAddr">Target for MREMAP_FIXED.</param>
    /// <param name="result">The resulting address, 0 on failure.</param>
    /// <returns>0 or the errno.</returns>
    public int Remap(ulong oldAddr, ulong oldLen, ulong newLen, int flags, ulong newAddr, out ulong result)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!RangeRejectedUpFront(oldAddr, oldLen))
        {
            EnsureOutsideUnmapped(oldAddr, PageAlign(oldLen), "mremap (old range)");
            if ((flags & Linux.MREMAP_MAYMOVE) == 0 && newLen > oldLen && !Contains(oldAddr, PageAlign(newLen)))
            {
                EnsureOutsideUnmapped(oldAddr, PageAlign(newLen), "mremap (growth)");
            }
        }

        if ((flags & Linux.MREMAP_FIXED) != 0 && (newAddr & (Linux.PAGE_SIZE - 1)) == 0 && !Contains(newAddr, PageAlign(newLen)))
        {
            throw new InvalidOperationException($"mremap MREMAP_FIXED target 0x{newAddr:x} is outside the region.");
        }

        int err = LibC.MremapErrno(oldAddr, oldLen, newLen, flags, newAddr, out result);
        if (err == 0 && !Contains(result, PageAlign(newLen)))
        {
            _ = LibC.MunmapErrno(result, newLen);
        }

        return err;
    }

    /// <summary>The maps lines of the region, clipped to [Start, End).</summary>
    /// <returns>The lines in address order.</returns>
    public List<MapsLine> ReadMaps() => HostMaps.ReadRegion(Start, End);

    /// <summary>Unmaps the whole region (including whatever the tests mapped into it).</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _ = LibC.MunmapErrno(Start, Size);
        lock (PlacementLock)
        {
            _ = LiveRegions.Remove((Start - GuardSize, End + GuardSize));
        }
    }

    private static ulong PageAlign(ulong len)
        => len > ulong.MaxValue - (Linux.PAGE_SIZE - 1) ? 0 : (len + Linux.PAGE_SIZE - 1) & ~(Linux.PAGE_SIZE - 1);

    /// <summary>mprotect/madvise reject these before looking at any VMA (EINVAL/ENOMEM or a 0-length no-op).</summary>
    private static bool RangeRejectedUpFront(ulong addr, ulong len)
    {
        if ((addr & (Linux.PAGE_SIZE - 1)) != 0 || len == 0)
        {
            return true;
        }

        ulong aligned = PageAlign(len);
        return aligned == 0 || addr + aligned < addr || addr >= Linux.TASK_SIZE;
    }

    /// <summary>MAP_FIXED mmap rejects these before touching any VMA.</summary>
    private static bool MmapRejectedUpFront(ulong addr, ulong len)
    {
        ulong aligned = PageAlign(len);
        return len == 0 || aligned == 0 || aligned > Linux.TASK_SIZE
            || (addr & (Linux.PAGE_SIZE - 1)) != 0 || addr > Linux.TASK_SIZE - aligned;
    }

    // mlock and munlock widen the range to whole pages instead of refusing an unaligned start.
    private void EnsureWidenedInside(ulong addr, ulong len, string op)
    {
        ulong start = addr & ~(Linux.PAGE_SIZE - 1);
        ulong widened = PageAlign(len + (addr - start));
        if (widened != 0 && start + widened > start)
        {
            EnsureOutsideUnmapped(start, widened, op);
        }
    }

    /// <summary>Throws unless every part of [addr, addr+len) outside the region is unmapped.</summary>
    private void EnsureOutsideUnmapped(ulong addr, ulong len, string op)
    {
        if (Contains(addr, len))
        {
            return;
        }

        ulong end = addr + len;
        bool below = addr < Start && HostMaps.AnyMapped(addr, Math.Min(end, Start));
        bool above = end > End && HostMaps.AnyMapped(Math.Max(addr, End), end);
        if (below || above)
        {
            throw new InvalidOperationException(
                $"{op}(0x{addr:x}, 0x{len:x}) would reach mapped memory outside region [0x{Start:x}, 0x{End:x}).");
        }
    }

    /// <summary>Fallback placement: let the kernel choose, over-reserving by 2 MiB and trimming to alignment.</summary>
    private static ulong ReserveAnywhereAligned(ulong size)
    {
        ulong total = size + Linux.HPAGE_PMD_SIZE;
        int err = LibC.MmapErrno(0, total, Linux.PROT_NONE, ReserveFlags, -1, 0, out ulong raw);
        if (err != 0)
        {
            throw new InvalidOperationException($"Reserving 0x{total:x} bytes failed: {Errno.Name(err)}.");
        }

        ulong aligned = (raw + Linux.HPAGE_PMD_SIZE - 1) & ~(Linux.HPAGE_PMD_SIZE - 1);
        if (aligned > raw)
        {
            _ = LibC.MunmapErrno(raw, aligned - raw);
        }

        ulong tail = raw + total - (aligned + size);
        if (tail > 0)
        {
            _ = LibC.MunmapErrno(aligned + size, tail);
        }

        return aligned;
    }
}
