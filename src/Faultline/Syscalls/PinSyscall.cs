using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Physical;

namespace Faultline.Syscalls;

/// <summary>
/// <c>pin_user_pages</c> (<c>__get_user_pages</c> with <c>FOLL_PIN</c>, and <c>FOLL_WRITE</c> for a write pin): faults
/// the pages of a range in, as a write when asked (breaking copy-on-write first), and takes a pin and a reference on
/// each frame (<see cref="PhysicalMemory.Pin"/>). All or nothing: a page that cannot be pinned unpins those before it.
/// </summary>
internal sealed class PinSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly PagePopulator _populator;
    private readonly object _owner;

    /// <summary>Pins over <paramref name="mm"/>, faulting through <paramref name="populator"/>'s context; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public PinSyscall(MemoryDescriptor mm, PagePopulator populator, object owner)
    {
        _mm = mm;
        _populator = populator;
        _owner = owner;
    }

    /// <summary>
    /// Pins the pages covering [address, address + length). EINVAL for a zero length; EFAULT for a range that wraps or
    /// leaves the user address space, a page outside every VMA, in host memory (<c>VM_IO | VM_PFNMAP</c>: no frame to
    /// pin), or in a VMA without the access (<c>check_vma_flags</c>: no <c>VM_READ</c>, or no <c>VM_WRITE</c> for a write
    /// pin), or whose fault fails; ENOMEM when guest memory runs out.
    /// </summary>
    public Errno Pin(ulong address, ulong length, bool write, out PinnedPages? pinned)
    {
        pinned = null;
        if (length == 0)
        {
            return Errno.EINVAL;
        }
        if (address + length < address || address + length > PageGeometry.TaskSize)
        {
            return Errno.EFAULT;
        }
        ulong start = address & ~PageGeometry.PageOffsetMask;
        ulong end = PageGeometry.PageAlign(address + length);
        ulong count = (end - start) >> PageGeometry.PageShift;
        if (count > int.MaxValue)
        {
            return Errno.ENOMEM;
        }
        var frames = new long[count];
        PhysicalMemory memory = _mm.Memory;
        int done = 0;
        bool keepsArena = false;
        try
        {
            // The pages already mapped as the pin needs are pinned under one read lock, with no fault context: the
            // common case (resident buffers) costs a walk and two atomics a page.
            _mm.EnterReadUnlessExiting(_owner);
            try
            {
                // The pins keep the arena: their frames stay readable after this address space is disposed. The read
                // lock keeps a Dispose from releasing the arena meanwhile.
                memory.AddUser();
                keepsArena = true;
                for (; done < frames.Length; done++)
                {
                    Errno refused = TryPinLocked(start + ((ulong)done << PageGeometry.PageShift), write, out frames[done], out bool grabbed, out _);
                    if (refused != Errno.None)
                    {
                        return refused;
                    }
                    if (!grabbed)
                    {
                        break;
                    }
                }
            }
            finally
            {
                _mm.MmapLock.ExitRead();
            }
            if (done < frames.Length)
            {
                // faultin_page: the rest is faulted in page by page from a context of its own, no lock held.
                Errno error = _populator.Run(start + ((ulong)done << PageGeometry.PageShift), end, (context, from, to) =>
                {
                    for (ulong page = from; page < to; page += PageGeometry.PageSize)
                    {
                        Errno failed = PinPage(context, page, write, out frames[done]);
                        if (failed != Errno.None)
                        {
                            return failed;
                        }
                        done++;
                    }
                    return Errno.None;
                });
                if (error != Errno.None)
                {
                    return error;
                }
            }
            pinned = new PinnedPages(memory, start, frames, write);
            return Errno.None;
        }
        finally
        {
            // All or nothing, also when a Dispose of the address space cut the walk short with an exception.
            if (pinned is null)
            {
                PinnedPages.UnpinAll(memory, frames.AsSpan(0, done));
                if (keepsArena)
                {
                    memory.Dispose();
                }
            }
        }
    }

    // Fault the page in, then look it up again, until it is pinned or refused.
    private Errno PinPage(FaultCpu context, ulong address, bool write, out long pfn)
    {
        while (true)
        {
            _mm.EnterReadUnlessExiting(_owner);
            Errno refused;
            bool grabbed, unshare;
            try
            {
                refused = TryPinLocked(address, write, out pfn, out grabbed, out unshare);
            }
            finally
            {
                _mm.MmapLock.ExitRead();
            }
            if (refused != Errno.None || grabbed)
            {
                return refused;
            }
            // faultin_page: a write for a write pin; for a read pin of a page shared copy-on-write, FAULT_FLAG_UNSHARE.
            AccessOutcome outcome = FaultRouter.Fault(_mm, context, address, write ? AccessKind.Write : AccessKind.Read,
                unshare ? FaultFlags.Unshare : FaultFlags.None);
            if (outcome != AccessOutcome.Ok)
            {
                return outcome == AccessOutcome.OutOfMemory ? Errno.ENOMEM : Errno.EFAULT;
            }
            _mm.Probes.Hit(ProbePoint.PinFaultedBeforeLookup);
        }
    }

    // follow_page_mask under the mmap read lock: EFAULT when the VMA forbids the pin (check_vma_flags), else whether the
    // page was pinned (false: it must be faulted in first).
    private Errno TryPinLocked(ulong address, bool write, out long pfn, out bool grabbed, out bool unshare)
    {
        pfn = -1;
        grabbed = false;
        unshare = false;
        Vma? vma = _mm.Tree.FindFirstEndingAbove(address) is { } found && found.Start <= address ? found : null;
        if (vma is null || (vma.Flags & (VmFlags.Io | VmFlags.PfnMap)) != 0 || (vma.Flags & (write ? VmFlags.Write : VmFlags.Read)) == 0)
        {
            return Errno.EFAULT;
        }
        // The walk stays inside a VMA of the published tree, whose tables the read lock keeps.
        grabbed = TryGrab(address, write, out pfn, out unshare);
        return Errno.None;
    }

    // follow_page_pte with FOLL_PIN: a present entry that allows the access (writable for a write pin: can_follow_write_pte)
    // is pinned under its PTE lock and marked young (and dirty for a write, FOLL_TOUCH). A read pin of the zero frame
    // takes no count (is_zero_folio). A read pin of an anonymous page not known exclusive (shared copy-on-write with a
    // forked relative) is refused with `unshare` set (gup_must_unshare): pinned as it is, the page would go on being
    // the child's while this mapping's next write copied it away, so the pin would no longer see this mapping's data.
    // Anything else faults first.
    private bool TryGrab(ulong address, bool write, out long pfn, out bool unshare)
    {
        pfn = -1;
        unshare = false;
        PageTable table = _mm.PageTable;
        WalkStatus walked = table.WalkLockless(address, out PteLocation at, out _);
        if (walked == WalkStatus.HugePmd)
        {
            return TryGrabHuge(table, address, at, write, out pfn);
        }
        if (walked != WalkStatus.Ok)
        {
            return false;
        }
        ref int ptl = ref table.PteLock(at.PteTable);
        SpinWord.Enter(ref ptl);
        try
        {
            ulong pte = table.ReadPte(at);
            if (!Pte.IsPresent(pte) || (write && (pte & Pte.Writable) == 0))
            {
                return false;
            }
            long frame = Pte.Frame(pte);
            if ((pte & Pte.Special) != 0)
            {
                if (write || frame != PhysicalMemory.ZeroFrame)
                {
                    return false;
                }
                pfn = frame;
                return true;
            }
            if (!write && (pte & Pte.Writable) == 0 && _mm.Memory.Info(frame).Kind == FrameKind.Anonymous
                && !_mm.Memory.HasFlags(frame, FrameFlags.AnonExclusive))
            {
                unshare = true;
                return false;
            }
            _mm.Memory.Pin(frame);
            // A Cpu's TLB fill sets the same bits with a CAS and no lock: retry on the value it left.
            while (!table.TrySetAccessedDirty(at.PteTable, at.PteIndex, pte, write))
            {
                pte = table.ReadPte(at);
            }
            pfn = frame;
            return true;
        }
        finally
        {
            SpinWord.Exit(ref ptl);
        }
    }

    // follow_huge_pmd with FOLL_PIN: the subpage of a huge PMD that allows the access is pinned (counted on the block's
    // head) under page_table_lock, and the PMD marked young (and dirty). The huge zero page is split instead, so a read
    // pin finds the 4 KiB zero frame on the next try.
    private bool TryGrabHuge(PageTable table, ulong address, in PteLocation at, bool write, out long pfn)
    {
        pfn = -1;
        table.EnterPageTableLock();
        ulong pmd = table.ReadPmdSlot(at.PmdTable, at.PmdIndex);
        bool huge = (pmd & Pte.Huge) != 0 && Pte.IsPresent(pmd);
        if (!huge || (write && (pmd & Pte.Writable) == 0) || (pmd & Pte.Special) != 0)
        {
            table.ExitPageTableLock();
            if (huge && !write && (pmd & Pte.Special) != 0)
            {
                table.SplitHugePmd(address);
            }
            return false;
        }
        long frame = Pte.Frame(pmd) + (long)((address & (PageGeometry.PmdSize - 1)) >> PageGeometry.PageShift);
        _mm.Memory.Pin(frame);
        // A Cpu's TLB fill sets the same bits with a CAS and no lock: retry on the value it left.
        while (!table.TrySetAccessedDirtyPmd(at, pmd, write))
        {
            pmd = table.ReadPmdSlot(at.PmdTable, at.PmdIndex);
        }
        table.ExitPageTableLock();
        pfn = frame;
        return true;
    }
}
