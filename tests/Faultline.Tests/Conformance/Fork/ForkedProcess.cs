namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// One Faultline process of a fork script: its address space and the Cpu that runs in it, plus an idle second Cpu on
/// the speculative path (which runs only with more than one user, <c>mm_users &gt; 1</c>).
/// </summary>
internal sealed class ForkedProcess : IDisposable
{
    private readonly Cpu? _idle;

    public ForkedProcess(AddressSpace space, FaultPath path)
    {
        Space = space;
        Cpu = space.AttachCpu();
        _idle = path == FaultPath.Speculative ? space.AttachCpu() : null;
    }

    public AddressSpace Space { get; }
    public Cpu Cpu { get; }

    public void Dispose()
    {
        _idle?.Dispose();
        Cpu.Dispose();
        Space.Dispose();
    }
}
