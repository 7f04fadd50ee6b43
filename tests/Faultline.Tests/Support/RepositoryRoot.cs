namespace Faultline.Tests.Support;

/// <summary>The checkout the tests were built from: the folder above the test binaries that holds <c>Faultline.slnx</c>.</summary>
internal static class RepositoryRoot
{
    /// <summary>The repository's root folder.</summary>
    public static string Path { get; } = Find();

    private static string Find()
    {
        for (DirectoryInfo? dir = new(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Faultline.slnx")))
            {
                return dir.FullName;
            }
        }
        throw new DirectoryNotFoundException("Faultline.slnx not found above " + AppContext.BaseDirectory);
    }
}
