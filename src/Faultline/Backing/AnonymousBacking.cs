namespace Faultline.Backing;

/// <summary>
/// Anonymous memory: pages are zero-filled on first touch and live only in guest RAM. Its faults go through
/// <c>do_anonymous_page</c>, never through <see cref="Fault"/>, and no notification concerns it.
/// </summary>
internal sealed class AnonymousBacking : IBacking
{
    /// <summary>The one instance: anonymous VMAs share it, so equal backing is a reference comparison when merging.</summary>
    public static readonly AnonymousBacking Instance = new();

    private AnonymousBacking()
    {
    }

    /// <inheritdoc />
    public bool IsAnonymous => true;

    /// <inheritdoc />
    public bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public string MapsName => string.Empty;

    /// <inheritdoc />
    /// <remarks>Unreachable: <c>handle_pte_fault</c> sends anonymous VMAs to <c>do_anonymous_page</c>.</remarks>
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn) =>
        throw new InvalidOperationException("anonymous memory faults through do_anonymous_page");

    /// <inheritdoc />
    public void Opened(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public void Closed(ulong pageOffset, ulong pages)
    {
    }

    /// <inheritdoc />
    public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset) => true;
}
