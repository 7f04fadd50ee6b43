using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Syscalls;

/// <summary>
/// <c>UFFDIO_REGISTER</c>, <c>UFFDIO_UNREGISTER</c> and <c>userfaultfd_release</c> (<c>fs/userfaultfd.c</c>): VMA
/// edits under the mmap write lock that set or clear the <c>VM_UFFD_*</c> flags and the channel of every VMA in a
/// range, splitting at its edges and merging afterwards (<c>vma_modify_flags_uffd</c>).
/// </summary>
internal sealed class UserFaultRegistration
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly object _owner;
    private readonly List<Vma> _vmas = [];

    /// <summary>Registration over <paramref name="mm"/>, edited through <paramref name="editor"/>; <paramref name="owner"/> names it in exceptions.</summary>
    public UserFaultRegistration(MemoryDescriptor mm, VmaEditor editor, object owner)
    {
        _mm = mm;
        _editor = editor;
        _owner = owner;
    }

    /// <summary>
    /// <c>validate_range</c>: page-aligned start and length, a length, and the range inside
    /// [<c>mmap_min_addr</c>, <c>TASK_SIZE</c>); EINVAL otherwise.
    /// </summary>
    public static Errno ValidateRange(MemoryDescriptor mm, ulong start, ulong length)
    {
        if ((start & PageGeometry.PageOffsetMask) != 0 || (length & PageGeometry.PageOffsetMask) != 0 || length == 0
            || start < mm.Settings.MmapMinAddress || start >= PageGeometry.TaskSize || length > PageGeometry.TaskSize - start)
        {
            return Errno.EINVAL;
        }
        return Errno.None;
    }

    /// <summary>
    /// <c>vma_can_userfault</c> on a kernel without uffd-wp PTE markers: anonymous memory for every mode, shared memory
    /// for missing and minor faults, nothing else.
    /// </summary>
    public static bool CanUserfault(Vma vma, VmFlags modes)
    {
        bool shmem = vma.Backing is IPageCacheBacking && (vma.Flags & VmFlags.Shared) != 0;
        if ((modes & VmFlags.UserfaultMinor) != 0 && !shmem)
        {
            return false;
        }
        if ((modes & VmFlags.UserfaultWp) != 0 && !vma.Backing.IsAnonymous)
        {
            return false;
        }
        return vma.Backing.IsAnonymous || shmem;
    }

    /// <summary>
    /// <c>userfaultfd_register</c>: EINVAL for a bad mode or range, ENOMEM when no VMA meets the range (holes are
    /// allowed), EINVAL for a VMA that cannot take the modes, EPERM without <c>VM_MAYWRITE</c>, EBUSY for a VMA of
    /// another channel; checked for every VMA before any changes. A VMA already registered with this channel gets the
    /// new modes in place of its old ones.
    /// </summary>
    public Errno Register(UserFaultContext context, ulong start, ulong length, UserFaultModes modes)
    {
        if (modes == UserFaultModes.None || (modes & ~(UserFaultModes.Missing | UserFaultModes.WriteProtect | UserFaultModes.Minor)) != 0)
        {
            return Errno.EINVAL;
        }
        Errno invalid = ValidateRange(_mm, start, length);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        VmFlags flags = FlagsOf(modes);
        ulong end = start + length;
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            _mm.Tree.Intersecting(start, end, _vmas);
            if (_vmas.Count == 0)
            {
                return Errno.ENOMEM;
            }
            foreach (Vma vma in _vmas)
            {
                if (!CanUserfault(vma, flags))
                {
                    return Errno.EINVAL;
                }
                if ((vma.Flags & VmFlags.MayWrite) == 0)
                {
                    return Errno.EPERM;
                }
                if (vma.UserFault is not null && vma.UserFault != context)
                {
                    return Errno.EBUSY;
                }
            }
            if (!FitsSplits(start, end))
            {
                return Errno.ENOMEM;
            }
            bool changed = false;
            foreach (Vma vma in _vmas)
            {
                if (vma.UserFault == context && (vma.Flags & VmFlags.UserfaultFlags) == flags)
                {
                    continue;
                }
                _editor.ReplaceUserFault(vma, start, end, (vma.Flags & ~VmFlags.UserfaultFlags) | flags, context);
                changed = true;
            }
            Finish(changed, start, end);
            return Errno.None;
        }
        finally
        {
            _vmas.Clear();
            _mm.MmapLock.ExitWrite();
        }
    }

    /// <summary>
    /// <c>userfaultfd_unregister</c>: EINVAL for a bad range, a VMA that cannot be registered, or one registered with
    /// another channel; ENOMEM when no VMA meets the range. Faults waiting in the range are woken (they retry and are
    /// handled as unregistered), write-protected entries lose the bit (<c>userfaultfd_clear_vma</c>).
    /// </summary>
    public Errno Unregister(UserFaultContext context, ulong start, ulong length)
    {
        Errno invalid = ValidateRange(_mm, start, length);
        if (invalid != Errno.None)
        {
            return invalid;
        }
        ulong end = start + length;
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            _mm.Tree.Intersecting(start, end, _vmas);
            if (_vmas.Count == 0)
            {
                return Errno.ENOMEM;
            }
            foreach (Vma vma in _vmas)
            {
                if (!CanUserfault(vma, vma.Flags & VmFlags.UserfaultFlags) || (vma.UserFault is not null && vma.UserFault != context))
                {
                    return Errno.EINVAL;
                }
            }
            if (!FitsSplits(start, end))
            {
                return Errno.ENOMEM;
            }
            bool changed = false;
            foreach (Vma vma in _vmas)
            {
                if (vma.UserFault is null)
                {
                    continue;
                }
                ulong from = Math.Max(start, vma.Start), to = Math.Min(end, vma.End);
                Clear(vma, from, to);
                context.Wake(from, to - from);
                changed = true;
            }
            Finish(changed, start, end);
            return Errno.None;
        }
        finally
        {
            _vmas.Clear();
            _mm.MmapLock.ExitWrite();
        }
    }

    /// <summary>
    /// <c>userfaultfd_release</c>: clears the channel from every VMA (faults from then on are handled as unregistered)
    /// and marks it released under the mmap write lock, then wakes every fault still asleep on it. Nothing to clear
    /// once the address space is being torn down.
    /// </summary>
    public void Release(UserFaultContext context)
    {
        _mm.UserFaults.Remove(context);
        _mm.MmapLock.EnterWrite();
        try
        {
            if (!_mm.IsExiting)
            {
                foreach (Vma vma in _mm.Tree.All())
                {
                    if (vma.UserFault == context)
                    {
                        _vmas.Add(vma);
                    }
                }
                foreach (Vma vma in _vmas)
                {
                    Clear(vma, vma.Start, vma.End);
                    _editor.MergeWindow(vma.Start, vma.End);
                }
                _mm.Tree.Publish();
                _editor.EndWriteSections();
            }
            context.MarkReleased();
        }
        finally
        {
            _vmas.Clear();
            _mm.MmapLock.ExitWrite();
        }
        context.Wake(0, 0);
    }

    private static VmFlags FlagsOf(UserFaultModes modes) =>
        ((modes & UserFaultModes.Missing) != 0 ? VmFlags.UserfaultMissing : 0)
        | ((modes & UserFaultModes.WriteProtect) != 0 ? VmFlags.UserfaultWp : 0)
        | ((modes & UserFaultModes.Minor) != 0 ? VmFlags.UserfaultMinor : 0);

    // The splits at both edges must fit under the map count, as every VMA edit's.
    private bool FitsSplits(ulong start, ulong end)
    {
        int splits = (_vmas[0].Start < start ? 1 : 0) + (_vmas[^1].End > end ? 1 : 0);
        return _mm.Tree.Count + splits <= _mm.Settings.MaxMapCount;
    }

    // userfaultfd_clear_vma: write-protected entries lose the bit (uffd_wp_range(false)), then the flags and channel go.
    private void Clear(Vma vma, ulong from, ulong to)
    {
        if ((vma.Flags & VmFlags.UserfaultWp) != 0)
        {
            MmuGather gather = _mm.RentGather();
            var resolve = new UffdWpVisitor(_mm.PageTable, protect: false, vmaMayWrite: false, gather);
            _mm.PageTable.Walker.Walk(from, to, ref resolve);
            gather.Finish(_mm.Probes);
            _mm.ReturnGather(gather);
        }
        _editor.ReplaceUserFault(vma, from, to, vma.Flags & ~VmFlags.UserfaultFlags, null);
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
}
