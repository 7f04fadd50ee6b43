namespace Faultline;

/// <summary><c>mremap</c> flags (<c>MREMAP_*</c>, Linux values). Any other bit is EINVAL.</summary>
[Flags]
public enum RemapFlags
{
    /// <summary>Resize in place only: growing fails with ENOMEM when the range after the mapping is taken.</summary>
    None = 0,
    /// <summary><c>MREMAP_MAYMOVE</c>: the mapping may move to another address when it cannot grow in place.</summary>
    MayMove = 1,
    /// <summary>
    /// <c>MREMAP_FIXED</c>: move to the new address, replacing whatever is mapped there (needs <see cref="MayMove"/>).
    /// With equal old and new lengths the range may span several mappings, which move together, gaps kept.
    /// </summary>
    Fixed = 2,
    /// <summary>
    /// <c>MREMAP_DONTUNMAP</c> (Linux 5.7): move the pages but leave the old range mapped and empty, so it reads zeros
    /// afterwards (needs <see cref="MayMove"/> and equal lengths).
    /// </summary>
    DontUnmap = 4,
}
