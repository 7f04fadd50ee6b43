using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// <c>brk</c> (<c>SYSCALL_DEFINE1(brk)</c>, <c>check_brk_limits</c>, <c>do_brk_flags</c>) with Linux's semantics: the
/// heap runs from <c>mm->start_brk</c> to the page-aligned break; growing extends the VMA ending at the old break (or
/// creates one) and never merges with anything else, shrinking unmaps, and any failure returns the old break. There
/// is no <c>RLIMIT_DATA</c> check (<c>check_data_rlimit</c>): Faultline has no data segment limit.
/// </summary>
internal sealed class BrkSyscall
{
    private const VmFlags BrkFlags = VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec | VmFlags.Account;

    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly RegionUnmapper _unmapper;
    private readonly PagePopulator _populator;
    private readonly object _owner;

    /// <summary><c>brk</c> over <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public BrkSyscall(MemoryDescriptor mm, VmaEditor editor, RegionUnmapper unmapper, PagePopulator populator, object owner)
    {
        _mm = mm;
        _editor = editor;
        _unmapper = unmapper;
        _populator = populator;
        _owner = owner;
    }

    /// <summary>Moves the break to <paramref name="requested"/>; returns the new break, or the old one on failure.</summary>
    public ulong Brk(ulong requested)
    {
        _mm.EnterWriteUnlessExiting(_owner);
        bool writeHeld = true;
        ulong original = _mm.Brk;
        ulong oldBreak = PageGeometry.PageAlign(original), newBreak = PageGeometry.PageAlign(requested);
        bool populate = false;
        List<UserFaultNotice>? unmapEvents = null;
        try
        {
            if (requested < _mm.StartBrk)
            {
                return original;
            }
            if (oldBreak == newBreak)
            {
                _mm.Brk = requested;
                return requested;
            }
            if (requested <= original)
            {
                // Shrinking is always allowed, but only over something mapped, and not over a sealed VMA.
                if (_mm.Tree.FindFirstEndingAbove(newBreak) is not { } first || first.Start >= oldBreak
                    || _unmapper.RefuseSealed(newBreak, oldBreak)
                    || _unmapper.CountAfterUnmap(newBreak, oldBreak) > _mm.Settings.MaxMapCount
                    || !_editor.EdgesMaySplit(newBreak, oldBreak))
                {
                    return original;
                }
                _mm.Brk = requested;
                // do_vmi_align_munmap with brk's uf list: the shrink is reported as an unmap.
                UserFaultEvents.PrepareUnmap(_mm, newBreak, oldBreak, ref unmapEvents);
                _unmapper.Unmap(newBreak, oldBreak, downgrade: true);
                writeHeld = false;
                return requested;
            }
            if (!Grow(oldBreak, newBreak))
            {
                return original;
            }
            _mm.Brk = requested;
            populate = (_mm.DefaultFlags & VmFlags.Locked) != 0;
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
            UserFaultEvents.Complete(unmapEvents);
        }
        if (populate)
        {
            _populator.Populate(oldBreak, newBreak, ignoreErrors: true);
        }
        return requested;
    }

    // check_brk_limits, the check against the next mapping, and do_brk_flags.
    private bool Grow(ulong oldBreak, ulong newBreak)
    {
        ulong length = newBreak - oldBreak;
        VmFlags flags = BrkFlags | _mm.DefaultFlags;
        VmFlags softDirty = _mm.Settings.SoftDirty ? VmFlags.SoftDirty : VmFlags.None;
        // get_unmapped_area(MAP_FIXED) bounds (a break aligned up past the top wraps, making the length huge) and
        // mlock_future_ok.
        if (length > PageGeometry.TaskSize || oldBreak > PageGeometry.TaskSize - length || !_mm.MayLockMore(flags, length))
        {
            return false;
        }
        // One page must stay free between the new break and the next mapping (its guard gap included).
        if (_mm.Tree.FindFirstEndingAbove(oldBreak) is { } next && newBreak + PageGeometry.PageSize > UnmappedAreaSearch.StartGap(next))
        {
            return false;
        }
        if (_mm.Tree.Count > _mm.Settings.MaxMapCount)
        {
            return false;
        }
        // vma_prev_limit(start_brk): only a VMA reaching above the heap's start may be extended, and only if it ends
        // at the old break and a new VMA there could merge with it.
        Vma? previous = _mm.Tree.FindLastStartingBelow(oldBreak);
        if (previous is not null && previous.End == oldBreak && oldBreak > _mm.StartBrk
            && (previous.Flags & ~VmFlags.SoftDirty) == flags && previous.Backing.IsAnonymous && previous.Policy == MemoryPolicy.Default
            && previous.PageOffset + ((oldBreak - previous.Start) >> PageGeometry.PageShift) == oldBreak >> PageGeometry.PageShift)
        {
            // do_brk_flags marks the grown or new heap VMA soft-dirty.
            _editor.Expand(previous, newBreak, softDirty);
        }
        else
        {
            Vma created = _mm.CreateVma(oldBreak, newBreak, oldBreak >> PageGeometry.PageShift, flags | softDirty, AnonymousBacking.Instance);
            _editor.BeginWrite(created);
            _editor.Attach(created);
        }
        _mm.Tree.Publish();
        _editor.EndWriteSections();
        if ((flags & VmFlags.Locked) != 0)
        {
            _mm.LockedPages += (long)(length >> PageGeometry.PageShift);
        }
        return true;
    }
}
