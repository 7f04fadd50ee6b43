namespace Faultline;

/// <summary>How an address space handles page faults.</summary>
public enum FaultPath
{
    /// <summary>Classic: take the mmap lock for read (the 2017 kernel; gVisor-style one lock).</summary>
    MmapLock,
    /// <summary>Speculative page faults (the SPF series): no mmap lock, validated by VMA sequence counts; falls back.</summary>
    Speculative,
    /// <summary>Per-VMA locks (today's kernel): lock only the faulting VMA; falls back.</summary>
    VmaLock,
}
