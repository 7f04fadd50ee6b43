using System.Collections.Concurrent;
using ScottPlot;
using SkiaSharp;

namespace Faultline.Cli.Reporting;

/// <summary>
/// Serves the DejaVu Sans typeface embedded in the tool to the charts, so that the labels of a PNG do not depend on
/// the fonts a machine has installed: a headless server often has none, and Skia then draws no text at all.
/// Thread-safe: typefaces are created once per style and shared.
/// </summary>
internal sealed class BundledFontResolver : IFontResolver
{
    /// <summary>The family name the charts ask for.</summary>
    public const string Family = "DejaVu Sans";

    private static readonly ConcurrentDictionary<bool, SKTypeface> Typefaces = new();
    private static int _installed;

    /// <summary>Makes the bundled family ScottPlot's default and first resolver; once per process.</summary>
    public static void Install()
    {
        if (Interlocked.Exchange(ref _installed, 1) == 0)
        {
            Fonts.FontResolvers.Insert(0, new BundledFontResolver());
            Fonts.Default = Family;
            Fonts.Sans = Family;
        }
    }

    /// <summary>The embedded typeface of <see cref="Family"/>, regular or bold.</summary>
    public static SKTypeface Typeface(bool bold) => Typefaces.GetOrAdd(bold, Load);

    /// <inheritdoc />
    public SKTypeface? CreateTypeface(string fontName, bool bold, bool italic) =>
        string.Equals(fontName, Family, StringComparison.OrdinalIgnoreCase) ? Typeface(bold) : null;

    /// <inheritdoc />
    public SKTypeface? CreateTypeface(string fontName, FontWeight weight, FontSlant slant, FontSpacing spacing) =>
        CreateTypeface(fontName, weight >= FontWeight.SemiBold, slant != FontSlant.Upright);

    private static SKTypeface Load(bool bold)
    {
        string name = bold ? "Faultline.Cli.Fonts.DejaVuSans-Bold.ttf" : "Faultline.Cli.Fonts.DejaVuSans.ttf";
        using Stream stream = typeof(BundledFontResolver).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the tool lacks its embedded font {name}");
        return SKTypeface.FromStream(stream) ?? throw new InvalidOperationException($"the embedded font {name} does not load");
    }
}
