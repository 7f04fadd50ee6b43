using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// <c>munmap</c> (<c>__vm_munmap</c>, <c>do_vmi_munmap</c>) with Linux's checks and errno values. The VMAs leave the
/// tree under the mmap write lock; the page tables are torn down after a downgrade to the read lock, and the freed
/// frames go back to the arena (cleared there) once the lock is dropped.
/// </summary>
internal sealed class MunmapSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly RegionUnmapper _unmapper;
    private readonly object _owner;

    /// <summary><c>munmap</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MunmapSyscall(MemoryDescriptor mm, VmaEditor editor, RegionUnmapper unmapper, object owner)
    {
        _mm = mm;
        _editor = editor;
        _unmapper = unmapper;
        _owner = owner;
    }

    /// <summary>Unmaps [address, address + length).</summary>
    public Errno Unmap(ulong address, ulong length)
    {
        _mm.SharedCounters.AddShared(VmEvent.UnmapCall);
        if ((address & PageGeometry.PageOffsetMask) != 0 || length == 0 || address > PageGeometry.TaskSize)
        {
            return Errno.EINVAL;
        }
        ulong aligned = PageGeometry.PageAlign(length);
        if (aligned == 0 || aligned > PageGeometry.TaskSize - address)
        {
            return Errno.EINVAL;
        }
        ulong end = address + aligned;
        _mm.EnterWriteUnlessExiting(_owner);
        bool writeHeld = true;
        MmuGather? released = null;
        bool keepsArena = false;
        List<UserFaultNotice>? unmapEvents = null;
        try
        {
            if (_mm.Tree.FindFirstEndingAbove(address) is not { } first || first.Start >= end)
            {
                return Errno.None;
            }
            // A split in the middle of one VMA adds one; do_vmi_align_munmap refuses it at the limit.
            if (_unmapper.CountAfterUnmap(address, end) > _mm.Settings.MaxMapCount)
            {
                return Errno.ENOMEM;
            }
            if (_unmapper.RefuseSealed(address, end))
            {
                // A sealed VMA cannot be unmapped (only a split before it stays, as on Linux).
                return Errno.EPERM;
            }
            if (!_editor.EdgesMaySplit(address, end))
            {
                return Errno.EINVAL;
            }
            // The arena outlives a Dispose that runs once the lock is dropped, until the frees below are done.
            _mm.Memory.AddUser();
            keepsArena = true;
            UserFaultEvents.PrepareUnmap(_mm, address, end, ref unmapEvents);
            released = _unmapper.UnmapGathered(address, end, downgrade: true);
            writeHeld = false;
        }
        finally
        {
            if (writeHeld)
            {
                _mm.MmapLock.ExitWrite();
            }
            else
            {
                _mm.MmapLock.ExitRead();
            }
        }
        if (keepsArena)
        {
            _mm.Probes.Hit(ProbePoint.UnmapUnlockedBeforeRelease);
            if (released is not null)
            {
                released.FreeGathered();
                _mm.ReturnGather(released);
            }
            _mm.Memory.Dispose();
        }
        UserFaultEvents.Complete(unmapEvents);
        return Errno.None;
    }
}
