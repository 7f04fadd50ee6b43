using Faultline.Mm;
using Faultline.Paging;
using Faultline.Syscalls;

namespace Faultline;

// Soft-dirty bits, the dirty log and write watches: the members emulators and sandboxes use to learn which pages
// were written. All of them rest on write protection, so a page costs nothing until it is written.
public sealed partial class AddressSpace
{
    private ClearRefsSyscall? _clearRefs;
    private PageMapSyscall? _pageMap;
    private DirtyLogSyscall? _dirtyLog;

    /// <summary>The write watches registered on this address space.</summary>
    internal WriteWatchList WriteWatches { get; } = new();

    /// <summary>
    /// <c>echo 4 &gt; /proc/pid/clear_refs</c>: clears every mapping's <c>VM_SOFTDIRTY</c> and every page's soft-dirty bit,
    /// write-protecting the pages so that the next write to each faults (reusing the page, no copy) and marks it
    /// soft-dirty again. Does nothing unless <see cref="FaultlineOptions.SoftDirty"/> is on, as on a kernel without
    /// <c>CONFIG_MEM_SOFT_DIRTY</c>. Safe while Cpus run: a write racing the call is seen now or by the next read.
    /// </summary>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public void ClearSoftDirty()
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        (_clearRefs ??= new ClearRefsSyscall(_mm, _editor, this)).ClearSoftDirty();
    }

    /// <summary>
    /// <c>/proc/pid/pagemap</c>: one entry per page from <paramref name="address"/> (page-aligned) into
    /// <paramref name="entries"/>, with the kernel's bits: 63 present, 62 swapped, 61 file page or shared anonymous
    /// memory, 57 armed by the dirty log (<c>PM_UFFD_WP</c>'s bit), 56 mapped exactly once, 55 soft-dirty (also for an
    /// unpopulated page of a mapping not cleared since it was made), 0-54 the guest frame number, reported only with
    /// <paramref name="showFrameNumbers"/> (the kernel shows it to <c>CAP_SYS_ADMIN</c> only; unprivileged readers see 0).
    /// Returns EINVAL for an unaligned address; pages outside every mapping read 0.
    /// </summary>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public Errno ReadPageMap(ulong address, Span<ulong> entries, bool showFrameNumbers = false)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return (_pageMap ??= new PageMapSyscall(_mm, this)).Read(address, entries, showFrameNumbers);
    }

    /// <summary>
    /// Get-and-clear of the dirty log: sets bit i of <paramref name="bitmap"/> (word i / 64, bit i % 64) for each page
    /// i of [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>) written since the
    /// previous call covering it (or since it was mapped), write-protects those pages again and returns how many there
    /// were. The first call reports every page written so far. Allocates nothing. Safe while Cpus run: a store racing
    /// the call is reported by this call (and has landed when it returns) or by the next one, never lost. Unmapped
    /// pages read as not written, and so does a page first mapped by a read fault, except where a read maps a private
    /// frame instead of the zero page (<see cref="FaultlineOptions.MapZeroPageOnRead"/> off): that frame is mapped
    /// dirty, as Linux maps it, and reads as written once. A page moved by <see cref="Remap"/> keeps its state.
    /// </summary>
    /// <exception cref="MemoryOperationException">EINVAL for an unaligned or wrapping range, EFAULT for a bitmap shorter than the range's pages / 64.</exception>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public long GetAndClearDirtyLog(ulong address, ulong length, Span<ulong> bitmap)
    {
        Errno error = TryGetAndClearDirtyLog(address, length, bitmap, out long written);
        return error == Errno.None ? written : throw new MemoryOperationException("get_dirty_log", error, address, length);
    }

    /// <summary><see cref="GetAndClearDirtyLog"/>, returning the errno.</summary>
    public Errno TryGetAndClearDirtyLog(ulong address, ulong length, Span<ulong> bitmap, out long written)
    {
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return (_dirtyLog ??= new DirtyLogSyscall(_mm, this)).GetAndClear(address, length, bitmap, out written);
    }

    /// <summary>
    /// Registers a <see cref="WriteWatch"/> over [<paramref name="address"/>, <paramref name="address"/> +
    /// <paramref name="length"/>) (whole pages) and arms it: the first write to each mapped page calls
    /// <paramref name="callback"/> before the store lands. Dispose the watch to stop.
    /// </summary>
    /// <exception cref="ArgumentException">The range is empty, not page-aligned, wraps, or overlaps another watch.</exception>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public WriteWatch WatchWrites(ulong address, ulong length, WriteWatchCallback callback)
    {
        ArgumentNullException.ThrowIfNull(callback);
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        if (length == 0 || ((address | length) & PageGeometry.PageOffsetMask) != 0 || address + length < address
            || address + length > PageGeometry.UserAddressEnd)
        {
            throw new ArgumentException("a write watch covers whole pages of the user address space", nameof(length));
        }
        var watch = new WriteWatch(this, address, length, callback);
        if (!WriteWatches.TryAdd(watch))
        {
            throw new ArgumentException("the range overlaps another write watch", nameof(address));
        }
        ArmWriteWatch(address, address + length, arm: true);
        return watch;
    }

    // Arms (write-protects and marks) or disarms the mapped pages of [start, end) under the mmap read lock.
    internal unsafe void ArmWriteWatch(ulong start, ulong end, bool arm)
    {
        _mm.EnterReadUnlessExiting(this);
        try
        {
            WriteTracking.Rewrite(_mm, start, end, clear: arm ? 0 : Pte.WriteWatched, set: arm ? Pte.WriteWatched : 0,
                writeProtect: arm, bitmap: null);
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    // A watch disposed after its address space has nothing left to disarm.
    internal void DisarmWriteWatchUnlessDisposed(ulong start, ulong end)
    {
        if (!_mm.IsExiting)
        {
            try
            {
                ArmWriteWatch(start, end, arm: false);
            }
            catch (ObjectDisposedException)
            {
                // Disposal began between the check and the lock: the pages go with the address space.
            }
        }
    }
}
