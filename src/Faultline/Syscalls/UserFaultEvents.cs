using Faultline.Areas;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// The non-cooperative events the system calls send to user-fault channels (<c>fs/userfaultfd.c</c>):
/// <c>userfaultfd_unmap_prep</c>/<c>_complete</c> (every unmap), <c>mremap_userfaultfd_prep</c>/<c>_complete</c>,
/// <c>userfaultfd_remove</c> (madvise). Fork's is sent by <see cref="MmDuplicator"/>. Unlike Linux, the caller does
/// not wait for the event to be read; resolutions answer EAGAIN until it is (<c>mmap_changing</c>).
/// </summary>
internal static class UserFaultEvents
{
    /// <summary>
    /// <c>userfaultfd_unmap_prep</c>, called by every unmap Linux reports through it (munmap, a MAP_FIXED mmap over
    /// existing mappings, an mremap's shrink, its destination and its source, a brk shrink): adds a notice of
    /// [<paramref name="start"/>, <paramref name="end"/>) for each channel with <c>UFFD_FEATURE_EVENT_UNMAP</c> registered
    /// there (once per channel and range, <c>has_unmap_ctx</c>) and raises its <c>mmap_changing</c>. The list is made on
    /// the first notice, so an unmap without registered VMAs allocates nothing. Caller holds the mmap write lock and
    /// unmaps the range next.
    /// </summary>
    public static void PrepareUnmap(MemoryDescriptor mm, ulong start, ulong end, ref List<UserFaultNotice>? notices)
    {
        // find_vma from each VMA's end: the walk itself allocates nothing.
        for (Vma? vma = mm.Tree.FindFirstEndingAbove(start); vma is not null && vma.Start < end; vma = mm.Tree.FindFirstEndingAbove(vma.End))
        {
            if (vma.UserFault is not { } context || !context.Has(UserFaultFeatures.EventUnmap))
            {
                continue;
            }
            var notice = new UserFaultNotice(context, UserFaultMessage.Event(UserFaultEventKind.Unmap, start, end, end - start));
            if (notices is null || !HasUnmap(notices, notice))
            {
                context.Prepare();
                (notices ??= []).Add(notice);
            }
        }
    }

    /// <summary>
    /// <c>userfaultfd_unmap_complete</c> and <c>mremap_userfaultfd_complete</c>: posts each prepared notice, in order.
    /// Called once the change is done (Linux calls it after dropping the mmap lock).
    /// </summary>
    public static void Complete(List<UserFaultNotice>? notices)
    {
        if (notices is null)
        {
            return;
        }
        foreach (UserFaultNotice notice in notices)
        {
            notice.Context.PostPrepared(notice.Message);
        }
    }

    /// <summary>
    /// <c>mremap_userfaultfd_prep</c> for the copy of <paramref name="source"/>: with <c>UFFD_FEATURE_EVENT_REMAP</c>
    /// the copy stays registered with the same channel (returned); otherwise it loses the registration
    /// (<paramref name="flags"/> lose the <c>VM_UFFD_*</c> bits; null returned).
    /// </summary>
    public static UserFaultContext? PrepareRemap(Vma source, ref VmFlags flags)
    {
        if (source.UserFault is { } context && context.Has(UserFaultFeatures.EventRemap))
        {
            return context;
        }
        flags &= ~VmFlags.UserfaultFlags;
        return null;
    }

    /// <summary>
    /// The second half of <c>mremap_userfaultfd_prep</c>, once the page tables moved: the channel kept by
    /// <see cref="PrepareRemap"/> (if any) raises <c>mmap_changing</c> and a notice that
    /// [<paramref name="from"/>, + <paramref name="length"/>) now lives at <paramref name="to"/> is added, to be posted
    /// by <see cref="Complete"/> after the unmap notices of the destination and before those of the source.
    /// </summary>
    public static void PrepareRemapEvent(UserFaultContext? context, ulong from, ulong to, ulong length, ref List<UserFaultNotice>? notices)
    {
        if (context is null)
        {
            return;
        }
        context.Prepare();
        (notices ??= []).Add(new UserFaultNotice(context, UserFaultMessage.Event(UserFaultEventKind.Remap, from, to, length)));
    }

    /// <summary>
    /// <c>userfaultfd_remove</c>: the pages of [<paramref name="start"/>, <paramref name="end"/>) of
    /// <paramref name="vma"/> are about to be discarded; sent before the zap, as on Linux.
    /// </summary>
    public static void NotifyRemove(Vma vma, ulong start, ulong end)
    {
        if (vma.UserFault is { } context && context.Has(UserFaultFeatures.EventRemove))
        {
            context.Post(UserFaultMessage.Event(UserFaultEventKind.Remove, start, end, end - start));
        }
    }

    // has_unmap_ctx: the same channel already has a notice of the same range.
    private static bool HasUnmap(List<UserFaultNotice> notices, UserFaultNotice notice)
    {
        foreach (UserFaultNotice existing in notices)
        {
            if (ReferenceEquals(existing.Context, notice.Context) && existing.Message.Kind == UserFaultEventKind.Unmap
                && existing.Message.Address == notice.Message.Address && existing.Message.Second == notice.Message.Second)
            {
                return true;
            }
        }
        return false;
    }
}
