using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// <c>madvise</c> (<c>do_madvise</c>, <c>madvise_walk_vmas</c>, <c>madvise_vma_behavior</c>) with Linux's checks and
/// errno values. As on Linux, a hole in the range is skipped and reported as ENOMEM at the end, and the first error
/// of a VMA ends the walk: the VMAs before it keep the advice.
/// </summary>
/// <remarks>
/// Advice that changes VMA flags takes the mmap lock for write and splits and merges VMAs as <c>vma_modify_flags</c>
/// does; MADV_DONTNEED, MADV_FREE and the advice with no effect yet take it for read, as Linux's
/// <c>madvise_lock</c> does; MADV_POPULATE_READ/WRITE fault through the fault path (<see cref="PagePopulator"/>).
/// </remarks>
internal sealed class MadviseSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly PagePopulator _populator;
    private readonly object _owner;

    /// <summary><c>madvise</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public MadviseSyscall(MemoryDescriptor mm, VmaEditor editor, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _populator = populator;
        _owner = owner;
    }

    /// <summary>Applies <paramref name="advice"/> to [address, address + length).</summary>
    public Errno Advise(ulong address, ulong length, Advice advice)
    {
        // is_valid_madvise, then the empty range.
        if (!Enum.IsDefined(advice) || (address & PageGeometry.PageOffsetMask) != 0)
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
        if (advice is Advice.PopulateRead or Advice.PopulateWrite)
        {
            return _populator.FaultIn(address, end, advice == Advice.PopulateWrite);
        }
        if (advice == Advice.Collapse)
        {
            return HugePageCollapse.CollapseRange(_mm, _owner, address, end);
        }
        bool write = ChangesFlags(advice);
        if (write)
        {
            _mm.EnterWriteUnlessExiting(_owner);
        }
        else
        {
            _mm.EnterReadUnlessExiting(_owner);
        }
        try
        {
            return Walk(address, end, advice);
        }
        finally
        {
            if (write)
            {
                _mm.MmapLock.ExitWrite();
            }
            else
            {
                _mm.MmapLock.ExitRead();
            }
        }
    }

    // madvise_walk_vmas: each VMA in the range in turn, found from where the last one ended (find_vma), so an edit of
    // one VMA (a split, under the write lock) never disturbs the walk; a hole makes the final answer ENOMEM but does not
    // stop it.
    private Errno Walk(ulong start, ulong end, Advice advice)
    {
        // Under the read lock no writer is between edits, so the writer's version is the published one.
        Vma? vma = _mm.Tree.FindFirstEndingAbove(start);
        if (vma is null || vma.Start >= end)
        {
            return Errno.ENOMEM;
        }
        MmuGather gather = _mm.RentGather();
        Errno unmapped = Errno.None, error = Errno.None;
        ulong reached = start;
        bool flagsChanged = false;
        long zapped = 0;
        ulong lastEnd = 0;
        while (vma is not null && vma.Start < end)
        {
            if (vma.Start > reached)
            {
                unmapped = Errno.ENOMEM;
            }
            ulong from = Math.Max(start, vma.Start), to = Math.Min(end, vma.End);
            lastEnd = vma.End;
            error = Apply(vma, from, to, advice, gather, ref flagsChanged, ref zapped);
            if (error != Errno.None)
            {
                break;
            }
            reached = to;
            if (reached == end)
            {
                break;
            }
            // The next VMA ends above this one's end; what an edit put in [from, to) ends at or below it.
            vma = _mm.Tree.FindFirstEndingAbove(reached);
        }
        if (error == Errno.None && lastEnd < end)
        {
            unmapped = Errno.ENOMEM;
        }
        if (flagsChanged)
        {
            _editor.MergeWindow(start, reached);
            _mm.Tree.Publish();
            _editor.EndWriteSections();
        }
        if (zapped != 0)
        {
            _mm.SharedCounters.AddShared(VmEvent.AnonPages, -zapped);
        }
        _mm.SharedCounters.AddShared(VmEvent.ShmemPages, -gather.ShmemPagesUnmapped);
        // The dropped or cleaned translations are flushed from every Cpu before the call returns.
        gather.Finish(_mm.Probes);
        _mm.ReturnGather(gather);
        return error != Errno.None ? error : unmapped;
    }

    // madvise_vma_behavior for [from, to) of one VMA.
    private Errno Apply(Vma vma, ulong from, ulong to, Advice advice, MmuGather gather, ref bool flagsChanged, ref long zapped)
    {
        VmFlags flags = vma.Flags;
        bool anonymous = vma.Backing.IsAnonymous;
        // can_madvise_modify: a sealed VMA refuses discarding advice unless its owner could write it anyway.
        if ((flags & VmFlags.Sealed) != 0 && IsDiscard(advice) && anonymous && (flags & VmFlags.Write) == 0)
        {
            return Errno.EPERM;
        }
        VmFlags newFlags = flags;
        switch (advice)
        {
            case Advice.Remove:
                // madvise_remove: only a shared, writable file mapping can have a hole punched.
                if ((flags & VmFlags.Locked) != 0 || anonymous)
                {
                    return Errno.EINVAL;
                }
                if ((flags & (VmFlags.Shared | VmFlags.MayWrite)) != (VmFlags.Shared | VmFlags.MayWrite))
                {
                    return Errno.EACCES;
                }
                if (vma.Backing is not IPageCacheBacking file)
                {
                    return Errno.EOPNOTSUPP;
                }
                // vfs_fallocate(PUNCH_HOLE | KEEP_SIZE): the pages leave the object and every mapping of them, in every
                // address space (the next touch reads zeros).
                ulong firstPage = vma.PageOffset + ((from - vma.Start) >> PageGeometry.PageShift);
                UserFaultEvents.NotifyRemove(vma, from, to);
                file.PunchHole(firstPage, firstPage + ((to - from) >> PageGeometry.PageShift));
                return Errno.None;
            case Advice.WillNeed:
                return Errno.None;
            case Advice.Cold or Advice.PageOut:
                // can_madv_lru_vma: locked and pfn-mapped memory is never reclaimed.
                if ((flags & (VmFlags.Locked | VmFlags.PfnMap)) != 0)
                {
                    return Errno.EINVAL;
                }
                if (_mm.Node is { } node)
                {
                    LruAdvice.Apply(_mm, node, from, to, pageOut: advice == Advice.PageOut);
                }
                return Errno.None;
            case Advice.DontNeed or Advice.DontNeedLocked or Advice.Free:
                // madvise_dontneed_free_valid_vma: host memory has no pages to drop.
                if ((flags & VmFlags.PfnMap) != 0)
                {
                    return Errno.EINVAL;
                }
                if ((flags & VmFlags.Locked) != 0 && advice != Advice.DontNeedLocked)
                {
                    return Errno.EINVAL;
                }
                // madvise_dontneed_free_valid_vma: a VM_PFNMAP (device) mapping has no pages to drop.
                if ((flags & VmFlags.PfnMap) != 0)
                {
                    return Errno.EINVAL;
                }
                if (advice == Advice.Free)
                {
                    if (!anonymous)
                    {
                        return Errno.EINVAL;
                    }
                    UserFaultEvents.NotifyRemove(vma, from, to);
                    _mm.PageTable.MarkLazyFree(from, to, gather);
                }
                else
                {
                    UserFaultEvents.NotifyRemove(vma, from, to);
                    zapped += _mm.PageTable.Zap(from, to, gather, _mm.Probes);
                }
                return Errno.None;
            case Advice.Normal:
                newFlags &= ~(VmFlags.RandomRead | VmFlags.SequentialRead);
                break;
            case Advice.Sequential:
                newFlags = (newFlags & ~VmFlags.RandomRead) | VmFlags.SequentialRead;
                break;
            case Advice.Random:
                newFlags = (newFlags & ~VmFlags.SequentialRead) | VmFlags.RandomRead;
                break;
            case Advice.DontFork:
                newFlags |= VmFlags.DontCopy;
                break;
            case Advice.DoFork:
                if ((flags & VmFlags.Io) != 0)
                {
                    return Errno.EINVAL;
                }
                newFlags &= ~VmFlags.DontCopy;
                break;
            case Advice.WipeOnFork:
                if (!anonymous || (flags & VmFlags.Shared) != 0)
                {
                    return Errno.EINVAL;
                }
                newFlags |= VmFlags.WipeOnFork;
                break;
            case Advice.KeepOnFork:
                newFlags &= ~VmFlags.WipeOnFork;
                break;
            case Advice.DontDump:
                newFlags |= VmFlags.DontDump;
                break;
            case Advice.DoDump:
                if ((flags & VmFlags.Io) != 0)
                {
                    return Errno.EINVAL;
                }
                newFlags &= ~VmFlags.DontDump;
                break;
            case Advice.HugePage:
                newFlags = (newFlags & ~VmFlags.NoHugePage) | VmFlags.HugePage;
                break;
            case Advice.NoHugePage:
                newFlags = (newFlags & ~VmFlags.HugePage) | VmFlags.NoHugePage;
                break;
        }
        return ModifyFlags(vma, from, to, newFlags, ref flagsChanged);
    }

    // madvise_update_vma: nothing when the flags stay; otherwise split and replace, where a split past the map count
    // is ENOMEM, which madvise reports as EAGAIN.
    private Errno ModifyFlags(Vma vma, ulong from, ulong to, VmFlags newFlags, ref bool flagsChanged)
    {
        if (newFlags == vma.Flags)
        {
            return Errno.None;
        }
        int splits = (vma.Start < from ? 1 : 0) + (vma.End > to ? 1 : 0);
        if (splits > 0 && _mm.Tree.Count + splits > _mm.Settings.MaxMapCount)
        {
            return Errno.EAGAIN;
        }
        if ((vma.Start < from && !VmaEditor.MaySplitAt(vma, from)) || (vma.End > to && !VmaEditor.MaySplitAt(vma, to)))
        {
            return Errno.EINVAL;
        }
        _editor.ReplaceFlags(vma, from, to, newFlags);
        flagsChanged = true;
        return Errno.None;
    }

    // madvise_need_mmap_write: the advice that edits VMAs.
    private static bool ChangesFlags(Advice advice) =>
        advice is not (Advice.WillNeed or Advice.DontNeed or Advice.DontNeedLocked or Advice.Free or Advice.Cold or Advice.PageOut
            or Advice.Remove);

    // is_discard: the advice a sealed, read-only anonymous VMA refuses.
    private static bool IsDiscard(Advice advice) =>
        advice is Advice.Free or Advice.DontNeed or Advice.DontNeedLocked or Advice.Remove or Advice.DontFork or Advice.WipeOnFork;
}
