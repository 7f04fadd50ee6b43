namespace Faultline;

/// <summary>One entry of a page's reverse map: an address space and the address at which it maps the page.</summary>
/// <param name="Space">The address space (the one asked, or a forked relative).</param>
/// <param name="Address">The page-aligned address of the mapping in <paramref name="Space"/>.</param>
public readonly record struct PageMapping(AddressSpace Space, ulong Address)
{
    /// <summary>The address space's id and the address in hex.</summary>
    public override string ToString() => $"space {Space.Id} at 0x{Address:x}";
}
