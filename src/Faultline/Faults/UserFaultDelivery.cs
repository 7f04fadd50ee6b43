using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Faults;

/// <summary>
/// <c>handle_userfault</c> (<c>fs/userfaultfd.c</c>), in two halves: <see cref="Handle"/> runs under the fault's
/// lock (mmap read lock or VMA read lock), queues the fault on the VMA's channel and re-checks the page table
/// (<c>userfaultfd_must_wait</c>); the path then releases its lock (<c>release_fault_lock</c>) and calls
/// <see cref="WaitUnlocked"/>, which sleeps until a resolution wakes the fault. The fault is then retried
/// (<c>VM_FAULT_RETRY</c>) on the mmap-lock path, as the kernel retries it.
/// </summary>
internal static class UserFaultDelivery
{
    /// <summary>
    /// Delivers the fault for <paramref name="reason"/>: SIGBUS when no channel can take it (none,
    /// <c>UFFD_FEATURE_SIGBUS</c>, or retry not allowed); <see cref="FaultResult.NoPage"/> once the address space is
    /// being torn down (the Cpu then refuses the access as it refuses every access after its teardown began); otherwise
    /// RETRY, with <see cref="FaultContext.PendingUserFault"/> set when the fault must sleep.
    /// </summary>
    public static FaultResult Handle(ref FaultContext fault, UserFaultModes reason)
    {
        // The speculative path bails out on every registered VMA ("[PATCH v9 18/24] mm: Provide speculative fault
        // infrastructure", 2018-03-13: abort when handle_userfault() has to be called). A registration replaces the VMA,
        // so one made behind a speculative fault fails its sequence check rather than being ignored as there.
        Debug.Assert(!fault.IsSpeculative, "handle_userfault on the speculative path");
        if (fault.IsSpeculative)
        {
            return FaultResult.Retry;
        }
        MemoryDescriptor mm = fault.Mm;
        UserFaultContext? context = fault.Vma!.UserFault;
        if (mm.IsExiting)
        {
            return FaultResult.NoPage;
        }
        // A released channel is cleared from every VMA under the mmap write lock before it is marked released, so a
        // fault holding the mmap or VMA lock never finds one here (the kernel's released check answers NOPAGE).
        Debug.Assert(context is null || !context.IsReleased, "a released channel still on a VMA");
        if (context is null || context.Has(UserFaultFeatures.SigBus))
        {
            return FaultResult.SigBus;
        }
        if ((fault.Flags & FaultFlags.AllowRetry) == 0)
        {
            return FaultResult.SigBus;
        }
        var waiter = new UserFaultWaiter(context, UserFaultMessage.Fault(fault.Address, reason, fault.Access, fault.Cpu.Id));
        context.Enqueue(waiter);
        // After the enqueue's fence: a resolution either installed its PTE before (seen here, no sleep) or will see
        // the waiter and wake it. The exit mark is checked the same way against the teardown's wake-up.
        if (!MustWait(ref fault, reason) || mm.IsExiting)
        {
            context.Withdraw(waiter);
            return FaultResult.Retry;
        }
        fault.PendingUserFault = waiter;
        return FaultResult.Retry;
    }

    /// <summary>
    /// The sleep of <c>handle_userfault</c>, with no mmap or VMA lock held: until a resolution, a wake, the channel's
    /// release or the address space's teardown wakes the fault (then RETRY; at teardown NOPAGE, and the Cpu refuses the
    /// access), or the channel's fault timeout passes (SIGBUS; Linux has no timeout).
    /// </summary>
    public static FaultResult WaitUnlocked(ref FaultContext fault)
    {
        UserFaultWaiter waiter = fault.PendingUserFault!;
        fault.PendingUserFault = null;
        fault.Mm.Probes.Hit(ProbePoint.UserFaultBlocked);
        bool woken = waiter.Wait(waiter.Context.FaultTimeout);
        if (!woken)
        {
            waiter.Context.Withdraw(waiter);
            // A wake that raced the timeout still counts.
            woken = waiter.IsWoken;
        }
        fault.Mm.Probes.Hit(ProbePoint.UserFaultWoken);
        if (fault.Mm.IsExiting)
        {
            return FaultResult.NoPage;
        }
        return woken ? FaultResult.Retry : FaultResult.SigBus;
    }

    // userfaultfd_must_wait: the entry is still missing, or still write-protected for a write-protect fault. The
    // fault's lock keeps the PTE table alive; the entry itself may change under us, as in the kernel.
    private static bool MustWait(ref FaultContext fault, UserFaultModes reason)
    {
        ulong pte = fault.Mm.PageTable.ReadPte(fault.Location);
        return Pte.IsNone(pte) || (reason == UserFaultModes.WriteProtect && (pte & Pte.Writable) == 0);
    }
}
