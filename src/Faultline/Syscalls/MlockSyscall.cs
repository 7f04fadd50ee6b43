using Faultline.Areas;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// <c>mlock</c>, <c>mlock2</c>, <c>munlock</c>, <c>mlockall</c> and <c>munlockall</c> (<c>mm/mlock.c</c>) with Linux's
/// checks and errno values: <c>VM_LOCKED</c> (and <c>VM_LOCKONFAULT</c>) set or cleared VMA by VMA as
/// <c>apply_vma_lock_flags</c> does (a hole ends the walk with ENOMEM, the VMAs before it keep the change),
/// <c>mm->locked_vm</c> kept, the lock limit (<c>RLIMIT_MEMLOCK</c>) enforced unless the space has
/// <c>CAP_IPC_LOCK</c>, and the locked range faulted in afterwards (<c>__mm_populate</c>).
/// </summary>
internal sealed class MlockSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly PagePopulator _populator;
    private readonly object _owner;

    /// <summary>The lock calls over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MlockSyscall(MemoryDescriptor mm, VmaEditor editor, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _populator = populator;
        _owner = owner;
    }

    /// <summary><c>mlock2</c> (<c>mlock</c> with no flags): locks and populates the pages of [address, address + length).</summary>
    public Errno Lock(ulong address, ulong length, MemoryLockFlags flags)
    {
        if ((flags & ~MemoryLockFlags.OnFault) != 0)
        {
            return Errno.EINVAL;
        }
        VmFlags lockFlags = VmFlags.Locked | ((flags & MemoryLockFlags.OnFault) != 0 ? VmFlags.LockOnFault : 0);
        // do_mlock: can_do_mlock first, then the range widened to whole pages.
        if (!_mm.CanLock)
        {
            return Errno.EPERM;
        }
        (ulong start, ulong aligned) = WidenToPages(address, length);
        Errno error;
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            ulong locked = (aligned >> PageGeometry.PageShift) + (ulong)_mm.LockedPages;
            ulong limit = _mm.Settings.MemoryLockLimit >> PageGeometry.PageShift;
            // Pages already locked in the range are not counted twice (count_mm_mlocked_page_nr).
            if (locked > limit && !_mm.Settings.CapIpcLock)
            {
                locked -= LockedPagesIn(start, start + aligned);
            }
            error = locked <= limit || _mm.Settings.CapIpcLock ? ApplyLockFlags(start, aligned, lockFlags) : Errno.ENOMEM;
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        if (error != Errno.None)
        {
            return error;
        }
        // __mlock_posix_error_return: a fault that failed (EFAULT, e.g. PROT_NONE) is ENOMEM, no memory is EAGAIN.
        return _populator.Populate(start, start + aligned, ignoreErrors: false) switch
        {
            Errno.None => Errno.None,
            Errno.EFAULT => Errno.ENOMEM,
            Errno.ENOMEM => Errno.EAGAIN,
            Errno other => other,
        };
    }

    /// <summary><c>munlock</c>: clears the lock flags of the pages of [address, address + length).</summary>
    public Errno Unlock(ulong address, ulong length)
    {
        (ulong start, ulong aligned) = WidenToPages(address, length);
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            return ApplyLockFlags(start, aligned, VmFlags.None);
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
    }

    /// <summary><c>mlockall</c>.</summary>
    public Errno LockAll(LockAllFlags flags)
    {
        if (flags == LockAllFlags.None || (flags & ~(LockAllFlags.Current | LockAllFlags.Future | LockAllFlags.OnFault)) != 0
            || flags == LockAllFlags.OnFault)
        {
            return Errno.EINVAL;
        }
        if (!_mm.CanLock)
        {
            return Errno.EPERM;
        }
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            // The whole address space must fit under the limit (total_vm) to lock what is mapped now.
            if ((flags & LockAllFlags.Current) != 0 && !_mm.Settings.CapIpcLock
                && MappedPages() > _mm.Settings.MemoryLockLimit >> PageGeometry.PageShift)
            {
                return Errno.ENOMEM;
            }
            ApplyLockAllFlags(flags);
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        if ((flags & LockAllFlags.Current) != 0)
        {
            _populator.Populate(0, PageGeometry.TaskSize, ignoreErrors: true);
        }
        return Errno.None;
    }

    /// <summary><c>munlockall</c>.</summary>
    public Errno UnlockAll()
    {
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            ApplyLockAllFlags(LockAllFlags.None);
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
        return Errno.None;
    }

    // do_mlock and munlock: the start rounded down to its page, the length grown to cover the same bytes in pages.
    private static (ulong Start, ulong Length) WidenToPages(ulong address, ulong length) =>
        (address & ~PageGeometry.PageOffsetMask, PageGeometry.PageAlign(length + (address & PageGeometry.PageOffsetMask)));

    // apply_vma_lock_flags: each VMA of [start, start + length) in turn gets `lockFlags` in place of its lock flags;
    // a hole ends the walk with ENOMEM, keeping what was changed before it.
    private Errno ApplyLockFlags(ulong start, ulong length, VmFlags lockFlags)
    {
        ulong end = start + length;
        if (end < start)
        {
            return Errno.EINVAL;
        }
        if (end == start)
        {
            return Errno.None;
        }
        List<Vma> vmas = _mm.Tree.Intersecting(start, end);
        if (vmas.Count == 0 || vmas[0].Start > start)
        {
            return Errno.ENOMEM;
        }
        Errno error = Errno.None;
        ulong reached = vmas[0].Start;
        bool changed = false;
        foreach (Vma vma in vmas)
        {
            if (vma.Start != reached)
            {
                error = Errno.ENOMEM;
                break;
            }
            ulong from = Math.Max(start, vma.Start), to = Math.Min(end, vma.End);
            error = Fixup(vma, from, to, (vma.Flags & ~VmFlags.LockedMask) | lockFlags, ref changed);
            if (error != Errno.None)
            {
                break;
            }
            reached = to;
        }
        if (error == Errno.None && reached < end)
        {
            error = Errno.ENOMEM;
        }
        Finish(changed, start, reached);
        return error;
    }

    // apply_mlockall_flags: mm->def_flags for MCL_FUTURE, and every VMA's lock flags for MCL_CURRENT (or cleared for
    // munlockall); errors of single VMAs are ignored, as Linux ignores them.
    private void ApplyLockAllFlags(LockAllFlags flags)
    {
        VmFlags onFault = (flags & LockAllFlags.OnFault) != 0 ? VmFlags.LockOnFault : 0;
        _mm.DefaultFlags &= ~VmFlags.LockedMask;
        if ((flags & LockAllFlags.Future) != 0)
        {
            _mm.DefaultFlags |= VmFlags.Locked | onFault;
            if ((flags & LockAllFlags.Current) == 0)
            {
                return;
            }
        }
        VmFlags toAdd = (flags & LockAllFlags.Current) != 0 ? VmFlags.Locked | onFault : 0;
        bool changed = false;
        foreach (Vma vma in VmaTree.InOrder(_mm.Tree.Published))
        {
            Fixup(vma, vma.Start, vma.End, (vma.Flags & ~VmFlags.LockedMask) | toAdd, ref changed);
        }
        Finish(changed, 0, PageGeometry.TaskSize);
    }

    // mlock_fixup: replaces [from, to) of the VMA with the new flags and keeps mm->locked_vm.
    private Errno Fixup(Vma vma, ulong from, ulong to, VmFlags newFlags, ref bool changed)
    {
        VmFlags oldFlags = vma.Flags;
        // mlock_fixup leaves VM_SPECIAL VMAs (host memory, devices) unlocked and uncounted, without an error.
        if (newFlags == oldFlags || (oldFlags & VmFlags.SpecialMask) != 0)
        {
            return Errno.None;
        }
        int splits = (vma.Start < from ? 1 : 0) + (vma.End > to ? 1 : 0);
        if (splits > 0 && _mm.Tree.Count + splits > _mm.Settings.MaxMapCount)
        {
            return Errno.ENOMEM;
        }
        if ((vma.Start < from && !VmaEditor.MaySplitAt(vma, from)) || (vma.End > to && !VmaEditor.MaySplitAt(vma, to)))
        {
            return Errno.EINVAL;
        }
        long pages = (long)((to - from) >> PageGeometry.PageShift);
        if ((newFlags & VmFlags.Locked) == 0)
        {
            _mm.LockedPages -= pages;
        }
        else if ((oldFlags & VmFlags.Locked) == 0)
        {
            _mm.LockedPages += pages;
        }
        _editor.ReplaceFlags(vma, from, to, newFlags);
        changed = true;
        return Errno.None;
    }

    private void Finish(bool changed, ulong start, ulong end)
    {
        if (!changed)
        {
            return;
        }
        _editor.MergeWindow(start, end);
        _mm.Tree.Publish();
        _editor.EndWriteSections();
    }

    // count_mm_mlocked_page_nr: pages of locked VMAs inside [start, end).
    private ulong LockedPagesIn(ulong start, ulong end)
    {
        ulong bytes = 0;
        foreach (Vma vma in _mm.Tree.Intersecting(start, end))
        {
            if ((vma.Flags & VmFlags.Locked) != 0)
            {
                bytes += Math.Min(end, vma.End) - Math.Max(start, vma.Start);
            }
        }
        return bytes >> PageGeometry.PageShift;
    }

    // mm->total_vm: every mapped page.
    private ulong MappedPages()
    {
        ulong bytes = 0;
        foreach (Vma vma in VmaTree.InOrder(_mm.Tree.Published))
        {
            bytes += vma.Length;
        }
        return bytes >> PageGeometry.PageShift;
    }
}
