using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Mm;

namespace Faultline.Faults;

/// <summary>
/// The classic fault path (<c>do_user_addr_fault</c> holding <c>mmap_lock</c> for read): find the VMA
/// (<c>lock_mm_and_find_vma</c>, which expands a grows-down VMA under the write lock), check the access,
/// <c>handle_mm_fault</c>; on RETRY loop once more with <see cref="FaultFlags.Tried"/>.
/// </summary>
internal static class ClassicFaultPath
{
    /// <summary>Handles a fault; the result is final (no RETRY escapes).</summary>
    public static FaultResult Handle(ref FaultContext fault)
    {
        MemoryDescriptor mm = fault.Mm;
        while (true)
        {
            Vma? vma = LockMmAndFindVma(mm, fault.Address);
            if (vma is null)
            {
                fault.Cpu.Counters.Add(VmEvent.SegvMapErr);
                fault.Vma = null;
                return FaultResult.SigSegv;
            }
            FaultResult result;
            try
            {
                result = HandleLocked(ref fault, vma);
            }
            finally
            {
                mm.MmapLock.ExitRead();
            }
            if ((result & FaultResult.Retry) == 0)
            {
                return result;
            }
            if (fault.PendingUserFault is not null)
            {
                // handle_userfault queued the fault and the mmap lock is now released: sleep, then retry.
                result = UserFaultDelivery.WaitUnlocked(ref fault);
                if ((result & FaultResult.Retry) == 0)
                {
                    return result;
                }
            }
            fault.Cpu.Counters.Add(VmEvent.ClassicRetry);
            if ((fault.Flags & FaultFlags.Tried) != 0 && (fault.Flags & FaultFlags.AllowRetry) == 0)
            {
                return FaultResult.SigBus;
            }
            fault.Flags |= FaultFlags.Tried;
        }
    }

    /// <summary>
    /// <c>lock_mm_and_find_vma</c>: takes the mmap read lock and returns the VMA containing <paramref name="address"/>
    /// with the lock held, or null with no lock held. An address below a grows-down VMA expands it: the read lock cannot
    /// be upgraded (x86's <c>mmap_upgrade_trylock</c> always fails), so it is dropped, the write lock taken, the VMA
    /// looked up again (another thread may have expanded, moved or removed it meanwhile), expanded, and the write lock
    /// downgraded to the read lock the fault goes on under.
    /// </summary>
    private static Vma? LockMmAndFindVma(MemoryDescriptor mm, ulong address)
    {
        mm.MmapLock.EnterRead();
        // Under the read lock no writer runs, so the published version is the current one.
        Vma? vma = VmaTree.Containing(mm.Tree.Published, address);
        if (vma is not null)
        {
            return vma;
        }
        Vma? next = mm.Tree.FindFirstEndingAbove(address);
        mm.MmapLock.ExitRead();
        if (next is null || (next.Flags & VmFlags.GrowsDown) == 0)
        {
            return null;
        }
        mm.Probes.Hit(ProbePoint.StackExpansionUnlocked);
        mm.MmapLock.EnterWrite();
        vma = mm.Tree.FindFirstEndingAbove(address);
        if (vma is not null && vma.Start > address)
        {
            vma = (vma.Flags & VmFlags.GrowsDown) != 0 ? StackExpansion.ExpandDownwards(mm, vma, address) : null;
        }
        if (vma is null)
        {
            mm.MmapLock.ExitWrite();
            return null;
        }
        mm.MmapLock.DowngradeWrite();
        return vma;
    }

    private static FaultResult HandleLocked(ref FaultContext fault, Vma vma)
    {
        fault.Mm.Probes.Hit(ProbePoint.ClassicLocked);
        if (AccessCheck.IsError(vma.Flags, fault.Access))
        {
            fault.Vma = vma;
            fault.Cpu.Counters.Add(VmEvent.SegvAccErr);
            return FaultResult.SigSegv;
        }
        if (vma.Backing is DeviceBacking)
        {
            // MMIO: the device is reached under the mmap read lock, which keeps the VMA in place.
            fault.Cpu.Counters.Add(VmEvent.ClassicFault);
            return fault.Cpu.Device.Perform(ref fault, vma);
        }
        fault.SnapshotStable(vma);
        fault.Cpu.Counters.Add(VmEvent.ClassicFault);
        return MemcgOomSection.Run(ref fault, static (ref FaultContext f) => MemoryFaultHandler.HandleMmFault(ref f));
    }
}
