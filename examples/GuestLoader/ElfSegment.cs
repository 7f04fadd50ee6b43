namespace Faultline.Examples.GuestLoader;

/// <summary>
/// One <c>PT_LOAD</c> program header, relocated by the load bias: <see cref="FileSize"/> bytes from
/// <see cref="FileOffset"/> of the file at <see cref="Address"/>, then zeros up to <see cref="MemorySize"/> (.bss).
/// </summary>
/// <param name="Address">The segment's guest address (p_vaddr plus the load bias).</param>
/// <param name="MemorySize">p_memsz.</param>
/// <param name="FileOffset">p_offset.</param>
/// <param name="FileSize">p_filesz.</param>
/// <param name="Protection">p_flags as a page protection.</param>
public readonly record struct ElfSegment(ulong Address, ulong MemorySize, ulong FileOffset, ulong FileSize, Protection Protection)
{
    /// <summary>The first page of the segment.</summary>
    public ulong PageStart => Address & ~PageGeometry.PageOffsetMask;

    /// <summary>The end of the segment's last page.</summary>
    public ulong PageEnd => (Address + MemorySize + PageGeometry.PageOffsetMask) & ~PageGeometry.PageOffsetMask;
}
