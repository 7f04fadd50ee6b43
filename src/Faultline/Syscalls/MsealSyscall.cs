using Faultline.Areas;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mseal</c> (Linux 6.10, <c>mm/mseal.c</c>) with Linux's checks and errno values: the whole range must be mapped
/// (checked before anything changes, so a hole seals nothing); each VMA is then split at the range edges and marked
/// <c>VM_SEALED</c>. Sealing is permanent: munmap, mprotect and a MAP_FIXED mmap over a sealed VMA fail with EPERM, and
/// so does discarding madvise of sealed read-only anonymous memory.
/// </summary>
internal sealed class MsealSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly object _owner;

    /// <summary><c>mseal</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MsealSyscall(MemoryDescriptor mm, VmaEditor editor, object owner)
    {
        _mm = mm;
        _editor = editor;
        _owner = owner;
    }

    /// <summary>Seals [address, address + length); <paramref name="flags"/> must be 0.</summary>
    public Errno Seal(ulong address, ulong length, ulong flags)
    {
        if (flags != 0 || (address & PageGeometry.PageOffsetMask) != 0)
        {
            return Errno.EINVAL;
        }
        ulong aligned = PageGeometry.PageAlign(length);
        if ((length != 0 && aligned == 0) || address + aligned < address)
        {
            return Errno.EINVAL;
        }
        ulong end = address + aligned;
        if (end == address)
        {
            return Errno.None;
        }
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            // check_mm_seal: the first pass, so that a hole leaves nothing half sealed.
            List<Vma> vmas = _mm.Tree.Intersecting(address, end);
            ulong reached = address;
            foreach (Vma vma in vmas)
            {
                if (vma.Start > reached)
                {
                    return Errno.ENOMEM;
                }
                reached = vma.End;
            }
            if (reached < end)
            {
                return Errno.ENOMEM;
            }
            int splits = 0;
            foreach (Vma vma in vmas)
            {
                if ((vma.Flags & VmFlags.Sealed) == 0)
                {
                    splits += (vma.Start < address ? 1 : 0) + (vma.End > end ? 1 : 0);
                }
            }
            if (splits > 0 && _mm.Tree.Count + splits > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if (!_editor.EdgesMaySplit(address, end))
            {
                return Errno.EINVAL;
            }
            bool changed = false;
            foreach (Vma vma in vmas)
            {
                if ((vma.Flags & VmFlags.Sealed) == 0)
                {
                    _editor.ReplaceFlags(vma, address, end, vma.Flags | VmFlags.Sealed);
                    changed = true;
                }
            }
            if (changed)
            {
                _editor.MergeWindow(address, end);
                _mm.Tree.Publish();
                _editor.EndWriteSections();
            }
            return Errno.None;
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
    }
}
