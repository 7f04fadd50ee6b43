using Faultline.Areas;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// The non-cooperative events the system calls send to user-fault channels (<c>fs/userfaultfd.c</c>):
/// <c>userfaultfd_unmap_prep</c>/<c>_complete</c> (munmap), <c>mremap_userfaultfd_prep</c>/<c>_complete</c>,
/// <c>userfaultfd_remove</c> (madvise). Fork's is sent by <see cref="MmDuplicator"/>. Unlike Linux, the caller does
/// not wait for the event to be read; resolutions answer EAGAIN until it is (<c>mmap_changing</c>).
/// </summary>
internal static class UserFaultEvents
{
    /// <summary>
    /// <c>userfaultfd_unmap_prep</c>: the channels with <c>UFFD_FEATURE_EVENT_UNMAP</c> registered in
    /// [<paramref name="start"/>, <paramref name="end"/>), each once; null when none. Caller holds the mmap write lock.
    /// </summary>
    public static List<UserFaultContext>? PrepareUnmap(MemoryDescriptor mm, ulong start, ulong end)
    {
        List<UserFaultContext>? contexts = null;
        // find_vma from each VMA's end: an unmap without registered VMAs allocates nothing.
        for (Vma? vma = mm.Tree.FindFirstEndingAbove(start); vma is not null && vma.Start < end; vma = mm.Tree.FindFirstEndingAbove(vma.End))
        {
            if (vma.UserFault is { } context && context.Has(UserFaultFeatures.EventUnmap) && !(contexts?.Contains(context) ?? false))
            {
                (contexts ??= []).Add(context);
            }
        }
        return contexts;
    }

    /// <summary><c>userfaultfd_unmap_complete</c>: tells each channel the range is gone (after the unmap).</summary>
    public static void CompleteUnmap(List<UserFaultContext>? contexts, ulong start, ulong end)
    {
        if (contexts is null)
        {
            return;
        }
        foreach (UserFaultContext context in contexts)
        {
            context.Post(UserFaultMessage.Event(UserFaultEventKind.Unmap, start, end, end - start));
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

    /// <summary><c>mremap_userfaultfd_complete</c>: [<paramref name="from"/>, + <paramref name="length"/>) now lives at <paramref name="to"/>.</summary>
    public static void CompleteRemap(UserFaultContext? context, ulong from, ulong to, ulong length) =>
        context?.Post(UserFaultMessage.Event(UserFaultEventKind.Remap, from, to, length));

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
}
