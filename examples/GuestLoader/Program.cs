namespace Faultline.Examples.GuestLoader;

/// <summary>Entry point: <c>GuestLoader [ELF]</c>, by default the running executable (<c>/proc/self/exe</c>).</summary>
public static class Program
{
    /// <summary>Loads the ELF, runs the demonstration, prints what happened; exit 0 when every check held.</summary>
    public static int Main(string[] args)
    {
        string path = args.Length > 0 ? args[0] : "/proc/self/exe";
        try
        {
            LoaderReport report = LoaderDemo.Run(path, Console.Out);
            return report.AllChecksHeld ? 0 : 1;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            Console.Error.WriteLine($"guest-loader: {path}: {e.Message}");
            return 2;
        }
    }
}
