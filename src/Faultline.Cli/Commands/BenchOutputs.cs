namespace Faultline.Cli.Commands;

/// <summary>Where <c>bench</c> writes its report.</summary>
/// <param name="Json">The JSON report.</param>
/// <param name="Svg">The SVG chart.</param>
/// <param name="Png">The PNG chart.</param>
/// <param name="Markdown">The tables as Markdown, or null.</param>
internal sealed record BenchOutputs(string Json, string Svg, string Png, string? Markdown);
