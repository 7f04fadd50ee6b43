namespace Faultline;

/// <summary>
/// A write watch over a range of an address space (a JIT's code pages: the first store to a page the translator read
/// code from must invalidate what it translated). Arming write-protects every page of the range that is mapped;
/// the first write to an armed page, by any Cpu and on any fault path, faults, disarms the page (restoring write
/// access without copying where the page is the mapping's own) and calls the callback before the store is retried,
/// so the callback runs before the written value lands. The page then stays writable, and later stores run at full
/// speed, until <see cref="Rearm()"/> asks again.
/// </summary>
/// <remarks>
/// Before, not after, because a translator must drop its translation before any Cpu can run code that the new bytes
/// make stale; after would leave a window where the store is visible and the old translation still used. The notice
/// goes to the Cpu whose fault disarmed the page; another Cpu writing the same page at the same moment may see its
/// store land while the callback still runs (the page is already disarmed), so a translator shared by several Cpus
/// must treat the callback as "this page is changing". Pages not mapped when armed are not watched (nothing can have
/// been read from them); arm after populating. A write by <c>MADV_POPULATE_WRITE</c> disarms without a callback.
/// Thread-safe: <see cref="Rearm()"/> and <see cref="Dispose"/> may be called from any thread, also from the callback
/// (re-arming the page the callback is called for makes the retried store fault and call it again).
/// </remarks>
public sealed class WriteWatch : IDisposable
{
    private readonly AddressSpace _space;
    private readonly WriteWatchCallback _callback;
    private int _disposed;

    internal WriteWatch(AddressSpace space, ulong address, ulong length, WriteWatchCallback callback)
    {
        _space = space;
        Address = address;
        Length = length;
        _callback = callback;
    }

    /// <summary>The first address watched (page-aligned).</summary>
    public ulong Address { get; }

    /// <summary>The length watched in bytes (whole pages).</summary>
    public ulong Length { get; }

    /// <summary>Arms every mapped page of the watch again.</summary>
    /// <exception cref="ObjectDisposedException">The watch or its address space is disposed.</exception>
    public void Rearm() => Rearm(Address, Length);

    /// <summary>Arms the mapped pages of [<paramref name="address"/>, <paramref name="address"/> + <paramref name="length"/>), which must lie in the watch.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The range is not page-aligned or leaves the watch.</exception>
    /// <exception cref="ObjectDisposedException">The watch or its address space is disposed.</exception>
    public void Rearm(ulong address, ulong length)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (((address | length) & PageGeometry.PageOffsetMask) != 0 || address < Address || address - Address > Length
            || length > Length - (address - Address))
        {
            throw new ArgumentOutOfRangeException(nameof(address), "the range must be whole pages inside the watch");
        }
        _space.ArmWriteWatch(address, address + length, arm: true);
    }

    /// <summary>Unregisters the watch and disarms its pages (they fault once more on their next write, without a callback).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _space.WriteWatches.Remove(this);
        _space.DisarmWriteWatchUnlessDisposed(Address, Address + Length);
    }

    // The Cpu's notice; a watch disposed meanwhile stays silent.
    internal void Notify(ulong address, Cpu cpu)
    {
        if (Volatile.Read(ref _disposed) == 0)
        {
            _callback(address, cpu);
        }
    }
}
