using Faultline.Areas;

namespace Faultline.Syscalls;

/// <summary>The VMA flags a system call's arguments ask for (<c>calc_vm_prot_bits</c>, <c>calc_vm_flag_bits</c>).</summary>
internal static class VmFlagBits
{
    /// <summary><c>calc_vm_prot_bits</c>: the access flags of a protection (read, write, execute).</summary>
    public static VmFlags CalcVmProtBits(Protection protection)
    {
        VmFlags vm = 0;
        if ((protection & Protection.Read) != 0)
        {
            vm |= VmFlags.Read;
        }
        if ((protection & Protection.Write) != 0)
        {
            vm |= VmFlags.Write;
        }
        if ((protection & Protection.Execute) != 0)
        {
            vm |= VmFlags.Exec;
        }
        return vm;
    }

    /// <summary>The flags of a new mapping (<c>do_mmap</c>): access, may-access, mapping flags, accounting.</summary>
    public static VmFlags ForMmap(Protection protection, MapFlags flags)
    {
        VmFlags vm = CalcVmProtBits(protection) | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec;
        if ((flags & MapFlags.GrowsDown) != 0)
        {
            vm |= VmFlags.GrowsDown;
        }
        if ((flags & MapFlags.Locked) != 0)
        {
            vm |= VmFlags.Locked;
        }
        if ((flags & MapFlags.NoReserve) != 0)
        {
            vm |= VmFlags.NoReserve;
        }
        // calc_vm_flag_bits: MAP_SYNC sets VM_SYNC even on a private mapping (only MAP_SHARED_VALIDATE checks it), and
        // MAP_STACK sets VM_NOHUGEPAGE (Linux 6.7); both show in smaps and keep a VMA from merging with others.
        if ((flags & MapFlags.Sync) != 0)
        {
            vm |= VmFlags.Sync;
        }
        if ((flags & MapFlags.Stack) != 0)
        {
            vm |= VmFlags.NoHugePage;
        }
        if (((int)flags & 0x0f) is 1 or 3)
        {
            // A shared mapping of a backing, or shared anonymous memory (shmem): VM_SHARED | VM_MAYSHARE.
            vm |= VmFlags.Shared | VmFlags.MayShare;
        }
        // accountable_mapping: private writable memory is committed unless MAP_NORESERVE.
        if ((vm & (VmFlags.NoReserve | VmFlags.Shared | VmFlags.Write)) == VmFlags.Write)
        {
            vm |= VmFlags.Account;
        }
        return vm;
    }
}
