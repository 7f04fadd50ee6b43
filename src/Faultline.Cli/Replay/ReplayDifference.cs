namespace Faultline.Cli.Replay;

/// <summary>A call whose result on Faultline was not the kernel's.</summary>
/// <param name="Call">The call as traced.</param>
/// <param name="Kernel">The kernel's result.</param>
/// <param name="Faultline">Faultline's result.</param>
/// <param name="Before">The calls that preceded it in the same address space, oldest first.</param>
internal sealed record ReplayDifference(string Call, string Kernel, string Faultline, IReadOnlyList<string> Before);
