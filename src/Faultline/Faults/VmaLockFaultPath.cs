using Faultline.Areas;
using Faultline.Backing;
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
            if (vma.Backing is DeviceBacking)
            {
                // MMIO: the device is reached under the VMA read lock (released below), no mmap lock.
                fault.Cpu.Counters.Add(VmEvent.VmaLockSuccess);
                return fault.Cpu.Device.Perform(ref fault, vma);
            }
            fault.Flags |= FaultFlags.VmaLock;
            fault.SnapshotStable(vma);
            result = MemcgOomSection.Run(ref fault, static (ref FaultContext f) => MemoryFaultHandler.HandleMmFault(ref f));
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
        if (fault.PendingUserFault is not null)
        {
            // handle_userfault under the VMA lock (6.x): the lock is released, the fault sleeps, and the retry goes to
            // the mmap-lock path as any VMA_LOCK_RETRY does.
            FaultResult woken = UserFaultDelivery.WaitUnlocked(ref fault);
            if ((woken & FaultResult.Retry) == 0)
            {
                return woken;
            }
        }
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
            Vma? vma;
            VmaReadLock locked;
            // rcu_read_lock: the VMA found is not reused for another mapping before the section ends; once read-locked
            // it cannot be detached (vma_mark_detached waits for its readers), so it needs no section after that.
            reader.EnterWalk(mm.Rcu.WalkEpoch);
            try
            {
                vma = mm.Tree.LookupLockless(fault.Address);
                if (vma is null)
                {
                    fault.Cpu.Counters.Add(VmEvent.VmaLockAbort);
                    return null;
                }
                mm.Probes.Hit(ProbePoint.VmaLockAfterLookup);
                locked = vma.TryStartRead();
            }
            finally
            {
                reader.ExitWalk();
            }
            switch (locked)
            {
                case VmaReadLock.Detached:
                    fault.Cpu.Counters.Add(VmEvent.VmaLockMiss);
                    continue;
                case VmaReadLock.WriteLocked:
                case VmaReadLock.Busy:
                    fault.Cpu.Counters.Add(VmEvent.VmaLockAbort);
                    return null;
            }
            if (!vma.Contains(fault.Address))
            {
                vma.EndRead();
                fault.Cpu.Counters.Add(VmEvent.VmaLockAbort);
                return null;
            }
            mm.Probes.Hit(ProbePoint.VmaLockLocked);
            return vma;
        }
    }
}
