namespace Faultline;

/// <summary>Mapping flags (<c>MAP_*</c>, Linux x86-64 values). Unknown bits are ignored unless <see cref="SharedValidate"/> is used, as on Linux.</summary>
[Flags]
public enum MapFlags
{
    /// <summary>No flag: invalid on its own (one of <see cref="Shared"/>, <see cref="Private"/> is required).</summary>
    None = 0,
    /// <summary><c>MAP_SHARED</c>.</summary>
    Shared = 0x01,
    /// <summary><c>MAP_PRIVATE</c>.</summary>
    Private = 0x02,
    /// <summary><c>MAP_SHARED_VALIDATE</c>: shared, and unknown flags are an error.</summary>
    SharedValidate = 0x03,
    /// <summary><c>MAP_FIXED</c>: place exactly at the address, replacing what is there.</summary>
    Fixed = 0x10,
    /// <summary><c>MAP_ANONYMOUS</c>: not backed by a file.</summary>
    Anonymous = 0x20,
    /// <summary><c>MAP_32BIT</c>: placed bottom-up between 1 and 2 GiB; a hint above that is ignored.</summary>
    Map32Bit = 0x40,
    /// <summary><c>MAP_GROWSDOWN</c>: a stack-like VMA (no automatic growth yet).</summary>
    GrowsDown = 0x100,
    /// <summary><c>MAP_DENYWRITE</c>: ignored.</summary>
    DenyWrite = 0x800,
    /// <summary><c>MAP_EXECUTABLE</c>: ignored.</summary>
    Executable = 0x1000,
    /// <summary><c>MAP_LOCKED</c>: <c>VM_LOCKED</c>, populated at once and counted against the lock limit.</summary>
    Locked = 0x2000,
    /// <summary><c>MAP_NORESERVE</c>: no commit accounting.</summary>
    NoReserve = 0x4000,
    /// <summary><c>MAP_POPULATE</c>: fault the pages in now (unless <see cref="NonBlock"/> is given too).</summary>
    Populate = 0x8000,
    /// <summary><c>MAP_NONBLOCK</c>: with <see cref="Populate"/>, no populate at all (as Linux since 2.6.23).</summary>
    NonBlock = 0x10000,
    /// <summary><c>MAP_STACK</c>: sets <c>VM_NOHUGEPAGE</c> (smaps <c>nh</c>), as Linux 6.7 and later.</summary>
    Stack = 0x20000,
    /// <summary>
    /// <c>MAP_HUGETLB</c>: Faultline has no huge pages, so it answers as a host with none reserved: EINVAL for a fixed
    /// address not 2 MiB-aligned, else ENOMEM.
    /// </summary>
    HugeTlb = 0x40000,
    /// <summary><c>MAP_SYNC</c>: on a private mapping it is not validated and sets <c>VM_SYNC</c> (smaps <c>sf</c>).</summary>
    Sync = 0x80000,
    /// <summary><c>MAP_FIXED_NOREPLACE</c>: place exactly at the address, fail with EEXIST if anything is there.</summary>
    FixedNoReplace = 0x100000,
    /// <summary><c>MAP_PRIVATE | MAP_ANONYMOUS</c>.</summary>
    PrivateAnonymous = Private | Anonymous,
}
