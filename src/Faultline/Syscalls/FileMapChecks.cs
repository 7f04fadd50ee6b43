using Faultline.Areas;

namespace Faultline.Syscalls;

/// <summary>
/// The file half of <c>do_mmap</c>: <c>file_mmap_ok</c>, the map type's flag validation (<c>LEGACY_MAP_MASK</c> for
/// MAP_SHARED_VALIDATE), the file's access mode against the protection, and the VMA flags a file mapping gets.
/// </summary>
internal static class FileMapChecks
{
    // LEGACY_MAP_MASK: the flags MAP_SHARED_VALIDATE accepts (MAP_SHARED silently drops the rest): the legacy bits,
    // MAP_32BIT, MAP_ABOVE4G (0x80) and MAP_HUGE_2MB | MAP_HUGE_1GB (bits 26-30). MAP_SYNC is added only for DAX files
    // (FOP_MMAP_SYNC), which guest files are not; MAP_FIXED_NOREPLACE is not in it (both EOPNOTSUPP on the host).
    private const int LegacyMapMask = 0x01 | 0x02 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x800 | 0x1000 | 0x2000 | 0x4000
        | 0x8000 | 0x10000 | 0x20000 | 0x40000 | (0x1f << 26);

    /// <summary>
    /// <c>file_mmap_ok</c> for a regular file (<c>MAX_LFS_FILESIZE</c>): the mapping's last byte must be a valid file
    /// offset; false means EOVERFLOW.
    /// </summary>
    public static bool OffsetFits(long offset, ulong length)
    {
        ulong maxSize = long.MaxValue;
        if (length > maxSize)
        {
            return false;
        }
        maxSize -= length;
        return ((ulong)offset >> PageGeometry.PageShift) <= maxSize >> PageGeometry.PageShift;
    }

    /// <summary>
    /// <c>do_mmap</c>'s switch on the map type for a file opened for reading (and for writing when
    /// <paramref name="fileWritable"/>): MAP_SHARED drops unknown flags, MAP_SHARED_VALIDATE refuses them (EOPNOTSUPP),
    /// a shared writable mapping of a read-only file is EACCES, MAP_GROWSDOWN is EINVAL; any other type EINVAL. On
    /// success <paramref name="vmFlags"/> holds the new VMA's flags: a shared mapping of a read-only file loses
    /// <c>VM_SHARED</c> and <c>VM_MAYWRITE</c> (it can never be written, so it behaves as a private one, still shown
    /// shared).
    /// </summary>
    public static Errno Check(Protection protection, ref MapFlags flags, bool fileWritable, out VmFlags vmFlags)
    {
        vmFlags = VmFlags.None;
        int type = (int)flags & 0x0f;
        if (type == 1)
        {
            // The placement flags were acted on before this point in do_mmap; keep them for the placement here.
            flags = (MapFlags)((int)flags & (LegacyMapMask | (int)MapFlags.FixedNoReplace));
        }
        if (type is 1 or 3)
        {
            if (((int)flags & ~LegacyMapMask) != 0)
            {
                return Errno.EOPNOTSUPP;
            }
            if ((protection & Protection.Write) != 0 && !fileWritable)
            {
                return Errno.EACCES;
            }
        }
        else if (type != 2)
        {
            return Errno.EINVAL;
        }
        if ((flags & MapFlags.GrowsDown) != 0)
        {
            return Errno.EINVAL;
        }
        vmFlags = VmFlagBits.ForMmap(protection, flags);
        if (type is 1 or 3 && !fileWritable)
        {
            vmFlags &= ~(VmFlags.MayWrite | VmFlags.Shared);
        }
        return Errno.None;
    }
}
