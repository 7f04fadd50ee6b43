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
        : base(space, store: null, MapsNameOf(name), 0, SharedMemoryObject.ShmemDeviceMinor, SharedMemoryObject.NextInode())
    {
        Name = name;
    }

    /// <summary>
    /// The file's name: the maps show a mapping of it as <c>/memfd:NAME (deleted)</c> (a name already starting with
    /// <c>memfd:</c> is shown as given, so the default is <c>memfd_create("")</c>'s <c>/memfd: (deleted)</c>).
    /// </summary>
    public string Name { get; }

    private static string MapsNameOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return "/" + (name.StartsWith("memfd:", StringComparison.Ordinal) ? name : "memfd:" + name) + " (deleted)";
    }
}
