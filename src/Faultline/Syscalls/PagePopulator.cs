using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Faults;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// Faulting pages in on behalf of a system call (<c>mm/gup.c</c>: <c>__mm_populate</c> with
/// <c>populate_vma_page_range</c> for MAP_POPULATE, MAP_LOCKED, mlock and brk; <c>faultin_page_range</c> for
/// MADV_POPULATE_READ/WRITE). The faults run through the configured fault path from a context of the address space's
/// own that is not a user (it does not count in <c>mm_users</c>); no mmap lock is held across them, as the kernel
/// drops it when a fault retries.
/// </summary>
/// <remarks>Thread safety: callers may race; one populate runs at a time per address space.</remarks>
internal sealed class PagePopulator
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;
    private readonly object _gate = new();

    /// <summary>The populator of <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public PagePopulator(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
    }

    /// <summary>
    /// <c>__mm_populate</c> over [start, end): each VMA in turn, holes skipped, <c>VM_LOCKONFAULT</c> VMAs left alone;
    /// a write fault where the VMA is private and writable (breaking COW), else a read fault, which any accessible
    /// VMA allows (<c>FOLL_FORCE</c>). A PROT_NONE VMA or a failed fault is EFAULT (ENOMEM when out of memory);
    /// with <paramref name="ignoreErrors"/> the walk goes on at the next VMA and the result is success.
    /// </summary>
    public Errno Populate(ulong start, ulong end, bool ignoreErrors) =>
        Run(start, end, (context, from, to) =>
        {
            ulong address = from;
            while (address < to)
            {
                if (FindFrom(address, to) is not { } found)
                {
                    return Errno.None;
                }
                (ulong vmaStart, ulong vmaEnd, VmFlags flags) = found;
                ulong first = Math.Max(address, vmaStart), last = Math.Min(to, vmaEnd);
                address = last;
                // __mm_populate skips VM_IO and VM_PFNMAP VMAs: host memory is mapped by its own faults, a device has no pages.
                if ((flags & (VmFlags.LockOnFault | VmFlags.Io | VmFlags.PfnMap)) != 0)
                {
                    continue;
                }
                Errno error = (flags & VmFlags.AccessFlags) == 0
                    ? Errno.EFAULT
                    : FaultRange(context, first, last, (flags & (VmFlags.Write | VmFlags.Shared)) == VmFlags.Write);
                if (error != Errno.None && !ignoreErrors)
                {
                    return error;
                }
            }
            return Errno.None;
        });

    /// <summary>
    /// <c>madvise_populate</c> (<c>faultin_page_range</c> without <c>FOLL_FORCE</c>): every page of [start, end) must
    /// lie in a VMA (else ENOMEM) that allows the access (else EINVAL); a fault that fails is EFAULT, or ENOMEM when
    /// out of memory. Pages before the failure stay populated.
    /// </summary>
    public Errno FaultIn(ulong start, ulong end, bool write) =>
        Run(start, end, (context, from, to) =>
        {
            ulong address = from;
            while (address < to)
            {
                if (FindFrom(address, to) is not { } found || found.Start > address)
                {
                    return Errno.ENOMEM;
                }
                (_, ulong vmaEnd, VmFlags flags) = found;
                // check_vma_flags: get_user_pages refuses VM_IO | VM_PFNMAP.
                if ((flags & (VmFlags.Io | VmFlags.PfnMap)) != 0)
                {
                    return Errno.EFAULT;
                }
                if ((flags & (write ? VmFlags.Write : VmFlags.Read)) == 0)
                {
                    return Errno.EINVAL;
                }
                ulong last = Math.Min(to, vmaEnd);
                Errno error = FaultRange(context, address, last, write);
                if (error != Errno.None)
                {
                    return error;
                }
                address = last;
            }
            return Errno.None;
        });

    // The first VMA ending above `address` and starting below `end`, read under the mmap read lock (find_vma).
    private (ulong Start, ulong End, VmFlags Flags)? FindFrom(ulong address, ulong end)
    {
        _mm.EnterReadUnlessExiting(_owner);
        try
        {
            return _mm.Tree.FindFirstEndingAbove(address) is { } vma && vma.Start < end ? (vma.Start, vma.End, vma.Flags) : null;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    private Errno FaultRange(FaultCpu context, ulong start, ulong end, bool write)
    {
        for (ulong page = start; page < end; page += PageGeometry.PageSize)
        {
            AccessOutcome outcome = FaultRouter.Fault(_mm, context, page, write ? AccessKind.Write : AccessKind.Read);
            if (outcome != AccessOutcome.Ok)
            {
                return outcome == AccessOutcome.OutOfMemory ? Errno.ENOMEM : Errno.EFAULT;
            }
        }
        return Errno.None;
    }

    // Runs `body` with a claimed, registered fault context. The context is claimed like a Cpu's slow path, so a
    // concurrent Dispose waits for it.
    internal Errno Run(ulong start, ulong end, Func<FaultCpu, ulong, ulong, Errno> body)
    {
        lock (_gate)
        {
            var context = new FaultCpu(_mm.Memory, _mm.Rcu);
            UseClaim claim = context.Claim;
            bool claimed = claim.TryEnter(Environment.CurrentManagedThreadId);
            Debug.Assert(claimed, "a new context is claimed by nobody");
            // Claimed before registering: if Dispose snapshots the claims after this registration it sees the claim
            // and waits; if before, the registration sees the exit mark (both under the descriptor's registry lock).
            if (!_mm.TryAttachContext(context.Reader, claim))
            {
                claim.Exit();
                ObjectDisposedException.ThrowIf(true, _owner);
            }
            try
            {
                return body(context, start, end);
            }
            finally
            {
                context.Frames.DrainAll();
                _mm.DetachContext(context.Reader, claim);
                claim.Exit();
                context.Counters.AddTo(_mm.SharedCounters);
            }
        }
    }
}
