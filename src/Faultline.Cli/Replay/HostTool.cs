namespace Faultline.Cli.Replay;

/// <summary>Finds a program on <c>PATH</c>.</summary>
internal static class HostTool
{
    /// <summary>The full path of <paramref name="name"/> on <c>PATH</c> (or /usr/bin, /usr/sbin), or null.</summary>
    public static string? Find(string name)
    {
        IEnumerable<string> folders = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Concat(["/usr/bin", "/usr/sbin", "/bin"]);
        return folders.Select(f => Path.Combine(f, name)).FirstOrDefault(p => File.Exists(p) && (File.GetUnixFileMode(p) & UnixFileMode.UserExecute) != 0);
    }
}
