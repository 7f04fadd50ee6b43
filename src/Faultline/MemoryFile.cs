using Faultline.Backing;

namespace Faultline;

/// <summary>
/// A file that lives only in guest RAM (a tmpfs file or a <c>memfd_create</c> one): it starts empty, its pages are
/// zero until written, and <see cref="GuestFile.Sync"/> has nothing to write. Disposal frees its pages.
/// </summary>
/// <remarks>Thread-safety and disposal as <see cref="GuestFile"/>.</remarks>
public sealed class MemoryFile : GuestFile
{
    /// <summary>An empty file named <paramref name="name"/> in the guest RAM of <paramref name="space"/>.</summary>
    public MemoryFile(AddressSpace space, string name = "memfd:")
        : base(space, store: null)
    {
        ArgumentNullException.ThrowIfNull(name);
        Name = name;
    }

    /// <summary>The file's name (a memfd's <c>/memfd:name</c> in the maps).</summary>
    public string Name { get; }
}
