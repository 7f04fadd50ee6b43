using Faultline.Areas;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Faults;

/// <summary>
/// The fault in flight (the kernel's <c>struct vm_fault</c>). A struct passed by reference: a fault allocates no
/// managed memory. The speculative path fills <see cref="VmaFlags"/>, <see cref="Protection"/> and
/// <see cref="Sequence"/> from a snapshot and the handlers use only those, never the live VMA fields.
/// </summary>
internal struct FaultContext
{
    /// <summary>The faulting address, page-aligned (<c>address</c>).</summary>
    public ulong Address;
    /// <summary>The address as accessed (<c>real_address</c>).</summary>
    public ulong RealAddress;
    /// <summary>What the access was.</summary>
    public AccessKind Access;
    /// <summary><c>flags</c>.</summary>
    public FaultFlags Flags;
    /// <summary>The VMA (<c>vma</c>).</summary>
    public Vma? Vma;
    /// <summary><c>vma_flags</c>: snapshot of the VMA's flags.</summary>
    public VmFlags VmaFlags;
    /// <summary><c>vma_page_prot</c>: snapshot of the VMA's page protection.</summary>
    public PageProtection Protection;
    /// <summary><c>pgoff</c>: the page offset within the backing.</summary>
    public ulong PageOffset;
    /// <summary>The VMA sequence the speculative fault validated against (<c>sequence</c>).</summary>
    public int Sequence;
    /// <summary>Where the PTE is, and <c>orig_pmd</c>.</summary>
    public PteLocation Location;
    /// <summary>True once <see cref="Location"/> names a PTE table.</summary>
    public bool HasPteTable;
    /// <summary><c>orig_pte</c>: the PTE as read once at the start of the PTE fault.</summary>
    public ulong OriginalPte;
    /// <summary>The thread's fault state.</summary>
    public FaultCpu Cpu;
    /// <summary>The address space.</summary>
    public MemoryDescriptor Mm;
    /// <summary>
    /// Set by <c>handle_userfault</c> when the fault must sleep on a user-fault channel: the path sleeps on it once it
    /// has released its lock, then retries.
    /// </summary>
    public UserFaultWaiter? PendingUserFault;

    /// <summary>Starts a fault.</summary>
    public FaultContext(MemoryDescriptor mm, FaultCpu cpu, ulong address, AccessKind access)
    {
        Mm = mm;
        Cpu = cpu;
        RealAddress = address;
        Address = address & ~PageGeometry.PageOffsetMask;
        Access = access;
        Flags = FaultFlags.User | FaultFlags.AllowRetry | FaultFlags.Killable
            | (access == AccessKind.Write ? FaultFlags.Write : 0)
            | (access == AccessKind.Execute ? FaultFlags.Instruction : 0);
    }

    /// <summary>True on the speculative path.</summary>
    public readonly bool IsSpeculative => (Flags & FaultFlags.Speculative) != 0;

    /// <summary>True for a write.</summary>
    public readonly bool IsWrite => (Flags & FaultFlags.Write) != 0;

    /// <summary>Fills the snapshot from a VMA that the caller holds stable (mmap lock or VMA lock).</summary>
    public void SnapshotStable(Vma vma)
    {
        Vma = vma;
        VmaFlags = vma.Flags;
        Protection = vma.PageProtection;
        PageOffset = vma.PageOffset + ((Address - vma.Start) >> PageGeometry.PageShift);
    }
}
