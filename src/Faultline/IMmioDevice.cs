namespace Faultline;

/// <summary>
/// A device behind a memory-mapped I/O region (<see cref="AddressSpace.MapDevice"/>): every guest load and store in the
/// region reaches it, since no frame backs the region and no translation of it is ever cached. Offsets are bytes from
/// the start of the device (the mapping's device offset plus the distance into the mapping).
/// </summary>
/// <remarks>
/// <para>
/// Thread safety: called from every <see cref="Cpu"/> of every address space that maps the device (fork shares it), at
/// the same time, on the Cpus' threads; the implementation synchronises its own state. A call runs while the mapping is
/// held in place (its VMA read-locked, or the mmap lock held for read on the classic fault path): an unmap or protection
/// change of the region waits for calls in flight, and once it returns no call for the old mapping starts. So a
/// callback must not unmap, remap or protect the region it serves, nor use the Cpu that is calling it; it may block,
/// and it may use other Cpus.
/// </para>
/// <para>
/// Register accesses (<see cref="Read(ulong, int)"/>, <see cref="Write(ulong, int, ulong)"/>) carry loads and stores
/// of 1, 2, 4 or 8 bytes that lie within one page; everything else (bulk copies, fills, values crossing a page, other
/// sizes) comes one page-bounded piece at a time through the span forms, whose default splits the piece into
/// naturally aligned register accesses. Atomic read-modify-writes never reach a device: they end in SIGBUS.
/// </para>
/// </remarks>
public interface IMmioDevice
{
    /// <summary>A load of <paramref name="size"/> bytes (1, 2, 4 or 8) at <paramref name="offset"/>; the value in the low bytes.</summary>
    ulong Read(ulong offset, int size);

    /// <summary>A store of the low <paramref name="size"/> bytes (1, 2, 4 or 8) of <paramref name="value"/> at <paramref name="offset"/>.</summary>
    void Write(ulong offset, int size, ulong value);

    /// <summary>
    /// Fills <paramref name="destination"/> from the device starting at <paramref name="offset"/> (never crossing a
    /// guest page). The default reads naturally aligned 8-, 4-, 2- and 1-byte registers in order, little-endian.
    /// </summary>
    void Read(ulong offset, Span<byte> destination)
    {
        int done = 0;
        while (done < destination.Length)
        {
            int size = RegisterSize(offset + (ulong)done, destination.Length - done);
            ulong value = Read(offset + (ulong)done, size);
            for (int i = 0; i < size; i++)
            {
                destination[done + i] = (byte)(value >> (8 * i));
            }
            done += size;
        }
    }

    /// <summary>
    /// Stores <paramref name="source"/> to the device starting at <paramref name="offset"/> (never crossing a guest
    /// page). The default writes naturally aligned 8-, 4-, 2- and 1-byte registers in order, little-endian.
    /// </summary>
    void Write(ulong offset, ReadOnlySpan<byte> source)
    {
        int done = 0;
        while (done < source.Length)
        {
            int size = RegisterSize(offset + (ulong)done, source.Length - done);
            ulong value = 0;
            for (int i = 0; i < size; i++)
            {
                value |= (ulong)source[done + i] << (8 * i);
            }
            Write(offset + (ulong)done, size, value);
            done += size;
        }
    }

    // The widest register access that is naturally aligned at `offset` and fits in `left` bytes.
    private static int RegisterSize(ulong offset, int left)
    {
        int size = 8;
        while (size > 1 && ((offset & (ulong)(size - 1)) != 0 || size > left))
        {
            size >>= 1;
        }
        return size;
    }
}
