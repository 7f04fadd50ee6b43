using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Faults;

/// <summary>
/// The per-VMA-lock fault entry of today's <c>do_user_addr_fault</c>: <c>lock_vma_under_rcu</c>, the access check,
/// <c>handle_mm_fault</c> with <see cref="FaultFlags.VmaLock"/>. Answers <see cref="FaultResult.Retry"/> when the
/// caller must fall back to the mmap lock.
/// </summary>
internal static class VmaLockFaultPath
{
    /// <summary>Tries the fault under the VMA lock.</summary>
    public static FaultResult Handle(ref FaultContext fault)
    {
        Vma? vma = LockVmaUnderRcu(ref fault);
        if (vma is null)
        {
            return FaultResult.Retry;
        }
        FaultResult result;
        try
        {
            if (AccessCheck.IsError(vma.Flags, fault.Access))
            {
                // bad_area_access_error under the VMA lock: a final answer, counted as a success of the path.
                fault.Cpu.Counters.Add(VmEvent.VmaLockSuccess);
                fault.Cpu.Counters.Add(VmEvent.SegvAccErr);
                fault.Vma = vma;
                return FaultResult.SigSegv;
            }
            fault.Flags |= FaultFlags.VmaLock;
            fault.SnapshotStable(vma);
            result = MemoryFaultHandler.HandleMmFault(ref fault);
        }
        finally
        {
            vma.EndRead();
        }
        if ((result & FaultResult.Retry) == 0)
        {
            fault.Cpu.Counters.Add(VmEvent.VmaLockSuccess);
            return result;
        }
        fault.Cpu.Counters.Add(VmEvent.VmaLockRetry);
        return FaultResult.Retry;
    }

    /// <summary>
    /// <c>lock_vma_under_rcu</c>: lock-free lookup, <c>vma_start_read</c>; a detached VMA was replaced under us, so
    /// look again (<c>VMA_LOCK_MISS</c>); any other failure aborts (<c>VMA_LOCK_ABORT</c>). The range is checked again
    /// after locking, since the VMA may have shrunk between lookup and lock.
    /// </summary>
    public static Vma? LockVmaUnderRcu(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        RcuReader reader = fault.Cpu.Reader;
        while (true)
        {
            // rcu_read_lock: the VMA found is not reused for another mapping before the section ends; once read-locked
            // it cannot be detached (vma_mark_detached waits for its readers), so it needs no section after that.
            reader.EnterWalk(mm.Rcu.WalkEpoch);
            LockOutcome outcome = TryLock(ref fault, out Vma? vma);
            reader.ExitWalk();
            switch (outcome)
            {
                case LockOutcome.Miss:
                    fault.Cpu.Counters.Add(VmEvent.VmaLockMiss);
                    continue;
                case LockOutcome.Abort:
                    fault.Cpu.Counters.Add(VmEvent.VmaLockAbort);
                    return null;
            }
            mm.Probes.Hit(ProbePoint.VmaLockLocked);
            return vma;
        }
    }

    private enum LockOutcome
    {
        Locked,
        Miss,
        Abort,
    }

    // One lookup and vma_start_read, inside the caller's walk section.
    private static LockOutcome TryLock(ref FaultContext fault, out Vma? vma)
    {
        MemoryDescriptor mm = fault.Mm;
        vma = mm.Tree.LookupLockless(fault.Address);
        if (vma is null)
        {
            return LockOutcome.Abort;
        }
        mm.Probes.Hit(ProbePoint.VmaLockAfterLookup);
        switch (vma.TryStartRead())
        {
            case VmaReadLock.Detached:
                return LockOutcome.Miss;
            case VmaReadLock.WriteLocked:
            case VmaReadLock.Busy:
                return LockOutcome.Abort;
        }
        if (!vma.Contains(fault.Address))
        {
            vma.EndRead();
            return LockOutcome.Abort;
        }
        return LockOutcome.Locked;
    }
}
