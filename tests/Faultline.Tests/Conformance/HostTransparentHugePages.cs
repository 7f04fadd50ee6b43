namespace Faultline.Tests.Conformance;

/// <summary>
/// The host kernel's THP mode, read from <c>/sys/kernel/mm/transparent_hugepage/enabled</c> (the bracketed word of
/// <c>always [madvise] never</c>); null when the kernel has no THP (the file is missing), where <c>MADV_HUGEPAGE</c> is
/// EINVAL. Read once; thread-safe.
/// </summary>
internal static class HostTransparentHugePages
{
    private const string EnabledPath = "/sys/kernel/mm/transparent_hugepage/enabled";

    private static readonly Lazy<TransparentHugePageMode?> Probed = new(Probe);

    /// <summary>The host's mode, or null without THP.</summary>
    public static TransparentHugePageMode? Mode => Probed.Value;

    private static TransparentHugePageMode? Probe()
    {
        if (!File.Exists(EnabledPath))
        {
            return null;
        }
        string text = File.ReadAllText(EnabledPath);
        int open = text.IndexOf('[');
        int close = text.IndexOf(']', open + 1);
        return open < 0 || close < 0 ? null : text[(open + 1)..close] switch
        {
            "always" => TransparentHugePageMode.Always,
            "madvise" => TransparentHugePageMode.Madvise,
            "never" => TransparentHugePageMode.Never,
            _ => null,
        };
    }
}
