namespace Faultline.Paging;

/// <summary>
/// The page protection a VMA's flags give its PTEs (the kernel's <c>vm_page_prot</c>, snapshotted by the
/// speculative fault as <c>vma_page_prot</c>). On x86 a readable or writable page is also readable, and a
/// page with none of read/write/exec is mapped PROT_NONE.
/// </summary>
internal readonly record struct PageProtection(bool Read, bool Write, bool Execute)
{
    /// <summary>Any access allowed (<c>vma_is_accessible</c>).</summary>
    public bool IsAccessible => Read || Write || Execute;

    /// <summary>Builds the protection from <c>PROT_*</c> bits.</summary>
    public static PageProtection From(Protection prot) =>
        new((prot & Protection.Read) != 0, (prot & Protection.Write) != 0, (prot & Protection.Execute) != 0);
}
