using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.VmStat;

namespace Faultline.Faults;

/// <summary>
/// A Cpu's access to a memory-mapped I/O region, carried by its fault (one per <see cref="FaultCpu"/>, reused, so no
/// access allocates). A device VMA never gets a PTE, so every access to it misses the TLB and faults; the fault path
/// that finds the VMA performs the access here, under the lock that keeps the VMA in place: the mmap read lock on the
/// classic path, the VMA read lock on the VMA-lock and speculative paths. An unmap (or any edit of the VMA) takes the
/// VMA write lock first, which waits for that read lock, so an access racing it either completes against the device
/// before the VMA leaves the tree or finds no VMA and faults; it never runs against a VMA being torn down.
/// </summary>
/// <remarks>
/// A fault that finds a device VMA with no request armed for its address answers SIGBUS (a <c>VM_PFNMAP</c> VMA with
/// no page to map, <c>do_fault</c>'s answer) and sets <see cref="Reached"/>, so the Cpu knows to arm a request and
/// fault again. Used by the one thread inside the Cpu's slow path.
/// </remarks>
internal sealed unsafe class DeviceRequest
{
    private ulong _address;
    private byte* _buffer;
    private int _length;
    private bool _register;
    private bool _armed;

    /// <summary>True when the last fault found a device VMA (armed or not).</summary>
    public bool Reached { get; private set; }

    /// <summary>True once the armed access reached the device.</summary>
    public bool Completed { get; private set; }

    /// <summary>
    /// Arms an access of <paramref name="length"/> bytes at <paramref name="address"/> (within one page), from
    /// <paramref name="buffer"/> for a write or into it for a read; <paramref name="register"/> for a 1-, 2-, 4- or
    /// 8-byte register access, else the device's span form.
    /// </summary>
    public void Arm(ulong address, byte* buffer, int length, bool register)
    {
        _address = address;
        _buffer = buffer;
        _length = length;
        _register = register;
        _armed = true;
        Completed = false;
    }

    /// <summary>Disarms the request and forgets what the last fault found.</summary>
    public void Disarm()
    {
        _armed = false;
        _buffer = null;
        Reached = false;
    }

    /// <summary>Records that the address is known to be in a device region without faulting (the Cpu's hint).</summary>
    public void MarkReached() => Reached = true;

    /// <summary>Forgets what an earlier fault found (the start of every fault).</summary>
    public void Clear() => Reached = false;

    /// <summary>
    /// The fault found the device VMA <paramref name="vma"/>, the access allowed and the VMA held in place by the
    /// caller: performs the armed access (the result is then <see cref="FaultResult.Ok"/>), else answers SIGBUS.
    /// </summary>
    public FaultResult Perform(ref FaultContext fault, Vma vma)
    {
        Reached = true;
        if (!_armed || fault.RealAddress != _address)
        {
            return FaultResult.SigBus;
        }
        fault.Mm.Probes.Hit(ProbePoint.DeviceAccessLocked);
        IMmioDevice device = ((DeviceBacking)vma.Backing).Device;
        ulong offset = (vma.PageOffset << PageGeometry.PageShift) + (fault.RealAddress - vma.Start);
        bool write = fault.Access == AccessKind.Write;
        if (_register)
        {
            if (write)
            {
                ulong value = 0;
                Buffer.MemoryCopy(_buffer, &value, sizeof(ulong), _length);
                device.Write(offset, _length, value);
            }
            else
            {
                ulong value = device.Read(offset, _length);
                Buffer.MemoryCopy(&value, _buffer, _length, _length);
            }
        }
        else if (write)
        {
            device.Write(offset, new ReadOnlySpan<byte>(_buffer, _length));
        }
        else
        {
            device.Read(offset, new Span<byte>(_buffer, _length));
        }
        Completed = true;
        return FaultResult.Ok;
    }

    /// <summary>
    /// The speculative path's device access: the VMA found and snapshotted under sequence <paramref name="sequence"/>
    /// is read-locked (<c>vma_start_read</c>) and the sequence checked again, so no writer changed it since the snapshot
    /// and none can until the access ends; any failure answers RETRY and the classic path takes over.
    /// </summary>
    public FaultResult PerformSpeculative(ref FaultContext fault, Vma vma, int sequence)
    {
        EventCounters counters = fault.Cpu.Counters;
        if (vma.TryStartRead() != VmaReadLock.Locked)
        {
            counters.Add(VmEvent.SpeculativeVmaChanged);
            return FaultResult.Retry;
        }
        try
        {
            if (vma.Sequence.Retry(sequence))
            {
                counters.Add(VmEvent.SpeculativeVmaChanged);
                return FaultResult.Retry;
            }
            FaultResult result = Perform(ref fault, vma);
            counters.Add(VmEvent.SpeculativeSuccess);
            return result;
        }
        finally
        {
            vma.EndRead();
        }
    }
}
