namespace Faultline;

// Mappings of guest files: mmap with a file, over the file's page cache.
public sealed partial class AddressSpace
{
    /// <summary>
    /// <c>mmap</c> of <paramref name="file"/> from byte <paramref name="offset"/>: <see cref="MapFlags.Shared"/> (or
    /// <see cref="MapFlags.SharedValidate"/>) maps the file's own pages, so stores reach the file (written back by
    /// <see cref="Msync"/> with <see cref="SyncFlags.Sync"/> or <see cref="GuestFile.Sync"/>) and file writes show in the
    /// mapping; <see cref="MapFlags.Private"/> maps them until the first store to a page, which copies it. An access to a
    /// page wholly past the end of the file is SIGBUS (<see cref="AccessOutcome.BusError"/>); the page holding the end
    /// maps, its tail zero. <paramref name="address"/> is a hint unless <see cref="MapFlags.Fixed"/> or
    /// <see cref="MapFlags.FixedNoReplace"/> is given. Returns the start. The mapping keeps the file's pages after the
    /// file is disposed, until it is unmapped.
    /// </summary>
    /// <exception cref="MemoryOperationException">With Linux's errno (see <see cref="TryMap(ulong, ulong, Protection, MapFlags, GuestFile, long, out ulong)"/>).</exception>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public ulong Map(ulong address, ulong length, Protection protection, MapFlags flags, GuestFile file, long offset)
    {
        Errno error = TryMap(address, length, protection, flags, file, offset, out ulong mapped);
        return error == Errno.None ? mapped : throw new MemoryOperationException("mmap", error, address, length, protection, flags);
    }

    /// <summary>
    /// <c>mmap</c> of a file, returning the errno (<see cref="Errno.None"/> on success). In Linux's order: EINVAL for an
    /// <paramref name="offset"/> not page-aligned; EBADF for a disposed file (with <see cref="MapFlags.Anonymous"/> the
    /// file is ignored, as Linux ignores the descriptor); EINVAL for <see cref="MapFlags.HugeTlb"/>, a zero length or a
    /// bad map type; the range checks of anonymous memory (ENOMEM, EPERM, EEXIST); EOVERFLOW when the offset plus the
    /// length overflows; EOPNOTSUPP for <see cref="MapFlags.SharedValidate"/> with a flag it does not know; EACCES for a
    /// shared writable mapping of a file opened read-only (a shared read-only one can never become writable: mprotect
    /// then answers EACCES); EINVAL for <see cref="MapFlags.GrowsDown"/>; ENODEV for a file of another address space's
    /// guest RAM (a forked relative shares it). A failed call changes nothing.
    /// </summary>
    /// <exception cref="ObjectDisposedException">This address space is disposed.</exception>
    public Errno TryMap(ulong address, ulong length, Protection protection, MapFlags flags, GuestFile file, long offset, out ulong mapped)
    {
        ArgumentNullException.ThrowIfNull(file);
        ObjectDisposedException.ThrowIf(_mm.IsExiting, this);
        return _mmap.MapFile(address, length, protection, flags, file.IsDisposed ? null : file.Backing, offset, out mapped);
    }
}
