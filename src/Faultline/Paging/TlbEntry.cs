namespace Faultline.Paging;

/// <summary>
/// One software-TLB slot: the virtual page it translates, tagged separately for each permission (so a hit is one
/// compare), and the host address of the frame. A tag is the page number plus one; 0 means no translation.
/// </summary>
internal struct TlbEntry
{
    /// <summary>Tag when reads are allowed.</summary>
    public ulong ReadTag;
    /// <summary>Tag when writes are allowed (the PTE is writable and already dirty).</summary>
    public ulong WriteTag;
    /// <summary>Tag when instruction fetches are allowed.</summary>
    public ulong ExecuteTag;
    /// <summary>Host address of the frame.</summary>
    public nint HostPage;
}
