namespace Faultline.Cli.Replay;

/// <summary>One mapping that exists when a program starts (a line of <c>/proc/PID/maps</c> at the exec stop).</summary>
/// <param name="Start">First byte.</param>
/// <param name="End">One past the last byte.</param>
/// <param name="Permissions">The maps column, e.g. <c>r-xp</c>.</param>
/// <param name="Name">The file or the special name (<c>[stack]</c>, <c>[vdso]</c>), empty for anonymous memory.</param>
internal sealed record InitialMapping(ulong Start, ulong End, string Permissions, string Name)
{
    /// <summary>The protection the permissions column shows.</summary>
    public Protection Protection =>
        (Permissions[0] == 'r' ? Protection.Read : 0) | (Permissions[1] == 'w' ? Protection.Write : 0) | (Permissions[2] == 'x' ? Protection.Execute : 0);

    /// <summary>True for a shared mapping (<c>s</c> in the fourth column).</summary>
    public bool Shared => Permissions.Length > 3 && Permissions[3] == 's';

    /// <summary>True for the main thread's stack, which grows down.</summary>
    public bool IsStack => Name == "[stack]";
}
