using Faultline.Host;

namespace Faultline.Cli.Replay;

/// <summary>
/// One process image of a trace replayed on the host kernel inside this process: a reserved region (PROT_NONE,
/// MAP_NORESERVE) holding every 1 GiB window of the recorded addresses, side by side in address order, and the calls
/// replayed through libc at the relocated addresses. Every mmap is MAP_FIXED at the kernel's recorded result, munmap
/// and everything freed by brk or mremap is reserved again (so nothing of the runtime's can land in a hole), and the
/// calls that would lock or seal this process (mlock, mlockall, mseal) are not replayed. Touches are plain loads and
/// stores.
/// </summary>
/// <remarks>Calls are made by one thread at a time; touches by any. Disposal releases the region.</remarks>
internal sealed unsafe class KernelReplayImage : IDisposable
{
    /// <summary>The relocation granule: recorded addresses keep their offset within 1 GiB.</summary>
    public const ulong Window = 1UL << 30;

    private const int ProtNone = 0, MapPrivate = 0x02, MapShared = 0x01, FixedFlag = 0x10, MapAnonymous = 0x20, MapNoReserve = 0x4000;
    private const int MadvNoHugePage = 15;

    private readonly Dictionary<ulong, ulong> _slots = [];
    private readonly ProcessLayout _layout;
    private readonly nint _base;
    private readonly ulong _size;
    private ulong _brk;

    /// <summary>Reserves room for <paramref name="windows"/> (window numbers: address / <see cref="Window"/>).</summary>
    /// <exception cref="InvalidOperationException">The reservation failed.</exception>
    public KernelReplayImage(IReadOnlyCollection<ulong> windows, ProcessLayout layout)
    {
        _layout = layout;
        ulong slot = 0;
        foreach (ulong window in windows.Order())
        {
            _slots[window] = slot++;
        }
        _size = Math.Max(1, slot) * Window;
        _base = LibC.Mmap(0, (nuint)_size, ProtNone, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (_base == -1)
        {
            throw new InvalidOperationException($"cannot reserve {_size >> 30} GiB for a kernel replay");
        }
    }

    /// <summary>The 1 GiB windows [start, start + length) covers.</summary>
    public static IEnumerable<ulong> Windows(ulong start, ulong length)
    {
        if (length == 0 || start >= PageGeometry.TaskSize)
        {
            yield break;
        }
        ulong last = Math.Min(start + length - 1, PageGeometry.TaskSize - 1);
        for (ulong w = start / Window; w <= last / Window; w++)
        {
            yield return w;
        }
    }

    /// <summary>Empties the region and maps the image's initial layout again (the exec).</summary>
    public void Reset()
    {
        Reserve((ulong)_base, _size);
        foreach (InitialMapping m in _layout.Mappings.Where(m => m.End <= PageGeometry.TaskSize))
        {
            MapFixed(m.Start, m.End - m.Start, (int)m.Protection, m.Shared ? MapShared : MapPrivate);
        }
        _brk = _layout.StartBrk;
    }

    /// <summary>Replays a successful memory call; false when it is not replayed here (failed on the kernel, or locking).</summary>
    public bool Execute(TraceCall call)
    {
        if (call.Errno is not null || call.ResultUnknown)
        {
            return false;
        }
        ulong[] a;
        ulong result;
        try
        {
            a = call.Args.Select(ArgumentText.Value).ToArray();
            result = ArgumentText.Value(call.Result);
        }
        catch (FormatException)
        {
            return false;
        }
        ulong Arg(int i) => i < a.Length ? a[i] : 0;
        switch (call.Name)
        {
            case "mmap":
                int flags = (int)Arg(3);
                return MapFixed(result, Arg(1), (int)Arg(2) & 7, flags & (MapShared | MapPrivate | 0x100 | MapNoReserve | 0x8000 | 0x20000));
            case "munmap":
                return Reserve(Relocate(Arg(0)), PageGeometry.PageAlign(Arg(1)));
            case "mprotect" or "pkey_mprotect":
                return Relocate(Arg(0)) is ulong p and not 0 && LibC.Mprotect((nint)p, (nuint)Arg(1), (int)Arg(2) & 7) == 0;
            case "madvise" when Arg(2) < 100:
                return Relocate(Arg(0)) is ulong m and not 0 && LibC.Madvise((nint)m, (nuint)Arg(1), (int)Arg(2)) == 0;
            case "mremap":
                return Remap(Arg(0), Arg(1), Arg(2), (int)Arg(3), result);
            case "brk":
                return Brk(result);
            case "mincore":
                ulong pages = (Arg(1) + PageGeometry.PageSize - 1) / PageGeometry.PageSize;
                return pages <= 1 << 20 && Relocate(Arg(0)) is ulong c and not 0 && LibC.MincoreErrno(c, Arg(1), new byte[pages]) == 0;
            case "msync":
                return Relocate(Arg(0)) is ulong s and not 0 && LibC.MsyncErrno(s, Arg(1), (int)Arg(2)) == 0;
            default:
                return false;
        }
    }

    /// <summary>A load or store at the relocated address of a recorded fault; false when the address is not in the region.</summary>
    public bool Touch(TraceFault touch)
    {
        ulong address = Relocate(touch.Address);
        if (address == 0)
        {
            return false;
        }
        if (touch.Access == AccessKind.Write)
        {
            *(byte*)address = 0;
        }
        else
        {
            _ = Volatile.Read(ref *(byte*)address);
        }
        return true;
    }

    /// <summary>The address in the region of recorded address <paramref name="address"/>, or 0 outside every window.</summary>
    public ulong Relocate(ulong address) =>
        _slots.TryGetValue(address / Window, out ulong slot) ? (ulong)_base + slot * Window + address % Window : 0;

    private bool Remap(ulong old, ulong oldLength, ulong newLength, int flags, ulong result)
    {
        ulong from = Relocate(old), to = Relocate(result);
        oldLength = PageGeometry.PageAlign(oldLength);
        newLength = PageGeometry.PageAlign(newLength);
        if (from == 0 || to == 0)
        {
            return false;
        }
        if (result == old)
        {
            // In place: the reservation after the mapping gives way first; a shrink reserves the tail again.
            if (newLength > oldLength && LibC.Munmap((nint)(from + oldLength), (nuint)(newLength - oldLength)) != 0)
            {
                return false;
            }
            bool done = LibC.Mremap((nint)from, (nuint)oldLength, (nuint)newLength, 0, 0) != -1;
            return newLength < oldLength ? Reserve(from + newLength, oldLength - newLength) && done : done;
        }
        const int mayMove = 1, fixedTarget = 2, dontUnmap = 4;
        bool moved = LibC.Mremap((nint)from, (nuint)oldLength, (nuint)newLength, mayMove | fixedTarget | (flags & dontUnmap), (nint)to) != -1;
        return moved && ((flags & dontUnmap) != 0 || Reserve(from, oldLength));
    }

    private bool Brk(ulong result)
    {
        ulong old = PageGeometry.PageAlign(_brk), next = PageGeometry.PageAlign(result);
        bool done = next > old ? MapFixed(old, next - old, 3, MapPrivate) : next >= old || Reserve(Relocate(next), old - next);
        _brk = result;
        return done;
    }

    private bool MapFixed(ulong recorded, ulong length, int prot, int flags)
    {
        ulong at = Relocate(recorded);
        length = PageGeometry.PageAlign(length);
        if (at == 0 || length == 0 || LibC.Mmap((nint)at, (nuint)length, prot, flags | MapAnonymous | FixedFlag, -1, 0) == -1)
        {
            return false;
        }
        // 4 KiB pages, as Faultline faults them (the kernel bench rows do the same).
        if ((flags & MapShared) == 0)
        {
            LibC.Madvise((nint)at, (nuint)length, MadvNoHugePage);
        }
        return true;
    }

    private static bool Reserve(ulong at, ulong length) =>
        at != 0 && length != 0 && LibC.Mmap((nint)at, (nuint)length, ProtNone, MapPrivate | MapAnonymous | MapNoReserve | FixedFlag, -1, 0) != -1;

    /// <inheritdoc />
    public void Dispose() => LibC.Munmap(_base, (nuint)_size);
}
