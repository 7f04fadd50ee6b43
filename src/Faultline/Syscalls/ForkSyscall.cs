using Faultline.Mm;
using Faultline.VmStat;

namespace Faultline.Syscalls;

/// <summary>
/// The memory half of <c>fork</c> (<c>copy_mm</c> → <c>dup_mmap</c>): copies this address space into a new, empty one
/// over the same guest RAM, then flushes this one's TLBs (<c>flush_tlb_mm</c>) before returning, so no Cpu of the
/// parent can still write through a translation the copy made read-only.
/// </summary>
internal sealed class ForkSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly object _owner;

    /// <summary><c>fork</c> of <paramref name="mm"/>; <paramref name="owner"/> as for <see cref="MmapSyscall"/>.</summary>
    public ForkSyscall(MemoryDescriptor mm, VmaEditor editor, object owner)
    {
        _mm = mm;
        _editor = editor;
        _owner = owner;
    }

    /// <summary>
    /// Fills <paramref name="child"/> (new, empty, over this address space's guest RAM, not yet visible to anyone)
    /// through <paramref name="childEditor"/>. On failure the caller disposes the child, releasing what was copied.
    /// </summary>
    public Errno Fork(MemoryDescriptor child, VmaEditor childEditor)
    {
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            child.MmapLock.EnterWrite();
            long writeProtected;
            Errno result;
            try
            {
                result = MmDuplicator.Duplicate(_mm, _editor, child, childEditor, out writeProtected);
                child.Tree.Publish();
                childEditor.EndWriteSections();
            }
            finally
            {
                child.MmapLock.ExitWrite();
            }
            _mm.Probes.Hit(Concurrency.ProbePoint.ForkBeforeFlush);
            if (writeProtected > 0)
            {
                // flush_tlb_mm: the grace period advances the TLB generation and waits for the parent's accesses in
                // flight, so none of its Cpus writes through a translation made read-only above once this returns.
                _mm.Rcu.Synchronize();
            }
            return result;
        }
        finally
        {
            // The SPF sequences end after the flush: a speculative fault that validates later finds the PTEs
            // read-only and every parent translation gone (see MmDuplicator's remarks).
            _editor.EndWriteSections();
            _mm.MmapLock.ExitWrite();
        }
    }
}
