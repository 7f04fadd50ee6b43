using Faultline.Areas;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Syscalls;

/// <summary>
/// <c>echo 4 &gt; /proc/pid/clear_refs</c> (<c>clear_refs_write</c> with <c>CLEAR_REFS_SOFT_DIRTY</c>): under the
/// mmap write lock every VMA loses <c>VM_SOFTDIRTY</c> (<c>vm_flags_mod</c> + <c>vma_set_page_prot</c>, here a
/// replacement of the VMA, which write-locks it and opens its sequence so no lockless fault keeps using the old
/// flags), then every entry loses its soft-dirty bit and its write permission (<c>clear_soft_dirty</c>), and the TLBs
/// are flushed once (<c>flush_tlb_mm</c>). The next write to each page faults and sets the bit again without copying
/// (<c>do_wp_page</c> reuses an exclusive anonymous page and makes a shared one writable).
/// </summary>
internal sealed class ClearRefsSyscall
{
    private readonly MemoryDescriptor _mm;
    private readonly VmaEditor _editor;
    private readonly object _owner;

    /// <summary>The call over <paramref name="mm"/>, editing with the address space's <paramref name="editor"/>.</summary>
    public ClearRefsSyscall(MemoryDescriptor mm, VmaEditor editor, object owner)
    {
        _mm = mm;
        _editor = editor;
        _owner = owner;
    }

    /// <summary>Clears the soft-dirty state of the whole address space; nothing without soft-dirty support.</summary>
    public void ClearSoftDirty()
    {
        if (!_mm.Settings.SoftDirty)
        {
            // Without CONFIG_MEM_SOFT_DIRTY VM_SOFTDIRTY is 0 and clear_soft_dirty is empty: the call does nothing.
            return;
        }
        _mm.EnterWriteUnlessExiting(_owner);
        try
        {
            bool replaced = false;
            foreach (Vma vma in _mm.Tree.All())
            {
                if ((vma.Flags & VmFlags.SoftDirty) != 0)
                {
                    _editor.ReplaceFlags(vma, vma.Start, vma.End, vma.Flags & ~VmFlags.SoftDirty);
                    replaced = true;
                }
            }
            if (replaced)
            {
                _mm.Tree.Publish();
            }
            unsafe
            {
                WriteTracking.Rewrite(_mm, 0, PageGeometry.UserAddressEnd, clear: Pte.SoftDirty, set: 0, writeProtect: true, bitmap: null);
            }
            if (replaced)
            {
                _editor.EndWriteSections();
            }
        }
        finally
        {
            _mm.MmapLock.ExitWrite();
        }
    }
}
