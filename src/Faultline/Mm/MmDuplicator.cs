using Faultline.Areas;
using Faultline.Paging;
using Faultline.Physical;
using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// <c>dup_mmap</c>: fills a new, empty address space with a copy of another's VMAs and page tables, sharing every
/// private page copy-on-write (<c>anon_vma_fork</c>, <c>copy_page_range</c>).
/// </summary>
/// <remarks>
/// What a fault racing the copy may do, and why each outcome is safe. The caller holds the parent's mmap lock for
/// write, and every parent VMA is write-locked (<c>vma_start_write</c>, as the kernel has done since 2023's "fork: lock
/// VMAs of the parent process when forking") with its SPF sequence open until the parent's TLBs are flushed:
/// <list type="bullet">
/// <item>classic and VMA-lock faults wait for the fork (the VMA lock fails, the mmap read lock waits);</item>
/// <item>a speculative fault that validates its VMA after the fork began fails that check and retries on the classic
/// path, so no write fault can copy or reuse a page the fork shared until every parent Cpu has lost its writable
/// translation (otherwise a store through a stale translation could land in the child's copy of the page);</item>
/// <item>a speculative fault that validated before installs its PTE under the PTE lock: before the copy of that table
/// (then the page is shared, write-protected) or after it (then only the parent has it: the fault is concurrent with
/// the fork, and the kernel documents that the child may miss such a page). A page table it installs speculatively
/// after the copy passed is the parent's alone and is freed with the parent's range;</item>
/// <item>a store through a parent Cpu's still-writable translation during the copy lands in the shared frame, before
/// the fork returns: both sides see it, as with a store that precedes the fork.</item>
/// </list>
/// So the child never gets a writable view of a parent frame, no frame or table leaks, and the parent loses nothing.
/// </remarks>
internal static class MmDuplicator
{
    /// <summary>
    /// Copies every VMA of <paramref name="parent"/> into <paramref name="child"/> (through
    /// <paramref name="childEditor"/>), opening <paramref name="parentEditor"/>'s write section on each parent VMA. The
    /// caller holds both mmap locks for write, publishes the child's tree, flushes the parent's TLBs when
    /// <paramref name="writeProtected"/> is nonzero, then ends the parent's write sections. On
    /// <see cref="Errno.ENOMEM"/> the child holds a partial copy for its disposal to release.
    /// </summary>
    public static Errno Duplicate(MemoryDescriptor parent, VmaEditor parentEditor, MemoryDescriptor child, VmaEditor childEditor,
        out long writeProtected)
    {
        writeProtected = 0;
        var frames = new FrameCache(child.Memory);
        List<(UserFaultContext Parent, UserFaultContext Child)>? userFaults = null;
        try
        {
            foreach (Vma vma in parent.Tree.All())
            {
                parentEditor.BeginWrite(vma);
                parent.Probes.Hit(Concurrency.ProbePoint.ForkBeforeVmaCopy);
                if ((vma.Flags & VmFlags.DontCopy) != 0)
                {
                    continue;
                }
                Vma copy = DuplicateVma(vma, child, ref userFaults);
                childEditor.Attach(copy);
                // vma_needs_copy: without an anon_vma no page of a private mapping was ever written, and a backed
                // mapping's pages are found again by the child's faults; a wiped VMA starts empty. Host memory
                // (VM_PFNMAP) is copied: the child maps the same host pages.
                if (copy.AnonVma is null && (vma.Flags & VmFlags.PfnMap) == 0)
                {
                    continue;
                }
                bool copyOnWrite = (vma.Flags & (VmFlags.Shared | VmFlags.MayWrite)) == VmFlags.MayWrite;
                CopyPageRangeVisitor copied = child.PageTable.CopyFrom(parent.PageTable, vma.Start, vma.End, copyOnWrite, frames,
                    copy.AnonVma, (copy.Flags & VmFlags.Write) != 0, parent.Probes);
                writeProtected += copied.WriteProtected;
                child.SharedCounters.AddShared(VmEvent.AnonPages, copied.AnonymousPages);
                if (copied.OutOfMemory)
                {
                    return Errno.ENOMEM;
                }
            }
            // The rest of the mm_struct the kernel copies or resets (dup_mm, mm_init): the break is the parent's; no
            // page is locked, and of the default flags only VM_NOHUGEPAGE passes (VM_INIT_DEF_MASK).
            child.Brk = parent.Brk;
            child.DefaultFlags = parent.DefaultFlags & VmFlags.NoHugePage;
            parent.SharedCounters.AddShared(VmEvent.Fork);
            // dup_userfaultfd_complete: each channel with UFFD_FEATURE_EVENT_FORK learns of the child's channel.
            if (userFaults is not null)
            {
                foreach ((UserFaultContext parentChannel, UserFaultContext childChannel) in userFaults)
                {
                    parentChannel.Post(UserFaultMessage.Event(UserFaultEventKind.Fork, 0, 0, 0, childChannel));
                }
            }
            return Errno.None;
        }
        finally
        {
            frames.DrainAll();
        }
    }

    // vm_area_dup with fork's adjustments: locked-memory (VM_LOCKED_MASK) flags do not pass to the child, userfault ones
    // only to a new channel of the child when the VMA's has UFFD_FEATURE_EVENT_FORK (dup_userfaultfd: one child channel
    // per parent channel); a wiped VMA gets no anon_vma (fresh zero memory); any other one with an anon_vma gets a child
    // of it (anon_vma_fork).
    private static Vma DuplicateVma(Vma vma, MemoryDescriptor child, ref List<(UserFaultContext Parent, UserFaultContext Child)>? userFaults)
    {
        VmFlags flags = vma.Flags & ~(VmFlags.Locked | VmFlags.LockOnFault);
        UserFaultContext? userFault = null;
        if (vma.UserFault is { } parentChannel && parentChannel.Has(UserFaultFeatures.EventFork))
        {
            userFaults ??= [];
            int found = userFaults.FindIndex(pair => pair.Parent == parentChannel);
            if (found < 0)
            {
                var created = new UserFaultContext(parentChannel.Features, child.Owner, parentChannel.FaultTimeout);
                child.UserFaults.Add(created);
                userFaults.Add((parentChannel, created));
                found = userFaults.Count - 1;
            }
            userFault = userFaults[found].Child;
        }
        else
        {
            flags &= ~VmFlags.UserfaultFlags;
        }
        Vma copy = child.CreateVma(vma.Start, vma.End, vma.PageOffset, flags, vma.Backing, vma.Policy);
        copy.UserFault = userFault;
        if ((vma.Flags & VmFlags.WipeOnFork) == 0 && vma.AnonVma is { } anonVma)
        {
            copy.AnonVma = new AnonVma(anonVma);
        }
        return copy;
    }
}
