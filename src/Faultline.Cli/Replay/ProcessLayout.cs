namespace Faultline.Cli.Replay;

/// <summary>
/// The address space the kernel builds at one <c>execve</c> with randomisation off: the mappings that exist before the
/// program's first system call, where the heap starts (<c>mm->start_brk</c>), where top-down placement starts
/// (<c>mm->mmap_base</c>) and the limits that decide placement and locking.
/// </summary>
/// <param name="ExecSeq">The <see cref="TraceCall.Seq"/> of the <c>execve</c> this layout follows.</param>
/// <param name="Program">The file executed.</param>
/// <param name="StartBrk"><c>mm->start_brk</c> (field 47 of <c>/proc/PID/stat</c>).</param>
/// <param name="MmapBase"><c>mm->mmap_base</c>, from the stack limit as x86-64's <c>mmap_base()</c> computes it.</param>
/// <param name="MmapMinAddress"><c>vm.mmap_min_addr</c>.</param>
/// <param name="StackLimit"><c>RLIMIT_STACK</c> in bytes.</param>
/// <param name="MemoryLockLimit"><c>RLIMIT_MEMLOCK</c> in bytes (<see cref="ulong.MaxValue"/>: unlimited).</param>
/// <param name="CapIpcLock">The recorder held <c>CAP_IPC_LOCK</c>.</param>
/// <param name="MaxMapCount"><c>vm.max_map_count</c>.</param>
/// <param name="Mappings">The mappings at the exec stop, in address order.</param>
/// <param name="ThpAlignedPlacement">The host places hint-less anonymous mappings of whole PMDs PMD-aligned
/// (<see cref="FaultlineOptions.ThpAlignedPlacement"/>).</param>
internal sealed record ProcessLayout(int ExecSeq, string Program, ulong StartBrk, ulong MmapBase, ulong MmapMinAddress,
    ulong StackLimit, ulong MemoryLockLimit, bool CapIpcLock, int MaxMapCount, IReadOnlyList<InitialMapping> Mappings, bool ThpAlignedPlacement);
