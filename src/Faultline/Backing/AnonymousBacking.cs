namespace Faultline.Backing;

/// <summary>Anonymous memory: pages are zero-filled on first touch and live only in guest RAM.</summary>
internal sealed class AnonymousBacking : Backing
{
    /// <summary>The one instance: anonymous VMAs share it, so equal backing is a reference comparison when merging.</summary>
    public static readonly AnonymousBacking Instance = new();

    private AnonymousBacking()
    {
    }

    /// <inheritdoc />
    public override bool IsAnonymous => true;

    /// <inheritdoc />
    public override bool IsSpeculativeSafe => true;

    /// <inheritdoc />
    public override string MapsName => string.Empty;
}
