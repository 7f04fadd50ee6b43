using BenchmarkDotNet.Attributes;
using Faultline.Host;

namespace Faultline.Benchmarks;

/// <summary>
/// The first write to a page after it was armed: every invocation stores to the next page of a populated 32 MiB
/// region that the iteration setup (not measured) armed by a dirty-log get-and-clear, by <c>clear_refs</c>
/// (<see cref="AddressSpace.ClearSoftDirty"/>), by the host kernel's <c>PAGEMAP_SCAN</c> write protection, or left
/// alone (a plain store: a TLB miss and a walk on Faultline, a plain store on the host). Each armed store is one
/// write-protect fault that reuses the page.
/// </summary>
[InvocationCount(Pages, 1)]
[WarmupCount(3)]
[IterationCount(15)]
public unsafe class WriteProtectFaultBenchmarks
{
    private const int Pages = 8192;
    private const ulong Length = Pages * 4096UL;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _region;
    private ulong _next;
    private HostWrittenPageScan? _scan;
    private readonly ulong[] _bitmap = new ulong[Pages / 64];
    private readonly (ulong Start, ulong End)[] _ranges = new (ulong, ulong)[Pages];

    /// <summary>How the pages were armed.</summary>
    public enum Arming
    {
        /// <summary>Faultline, not armed: a plain store (after a TLB miss).</summary>
        PlainStore,
        /// <summary>Faultline, armed by a dirty-log get-and-clear.</summary>
        DirtyLog,
        /// <summary>Faultline, armed by clear_refs.</summary>
        SoftDirtyClear,
        /// <summary>The host, not armed.</summary>
        KernelPlainStore,
        /// <summary>The host, armed by PAGEMAP_SCAN's write protection.</summary>
        KernelPagemapScan,
    }

    /// <summary>The arming.</summary>
    [Params(Arming.PlainStore, Arming.DirtyLog, Arming.SoftDirtyClear, Arming.KernelPlainStore, Arming.KernelPagemapScan)]
    public Arming Kind { get; set; }

    private bool OnHost => Kind is Arming.KernelPlainStore or Arming.KernelPagemapScan;

    /// <summary>Maps and populates the region.</summary>
    [GlobalSetup]
    public void GlobalSetup()
    {
        if (OnHost)
        {
            _region = (ulong)LibC.MapAnonymousSmallPages(Length);
            for (ulong at = _region; at < _region + Length; at += 4096)
            {
                *(long*)at = 1;
            }
            if (Kind == Arming.KernelPagemapScan)
            {
                _scan = new HostWrittenPageScan(_region, Length);
            }
            return;
        }
        var space = new AddressSpace(new FaultlineOptions { PhysicalMemoryBytes = (long)Length + (64L << 20), SoftDirty = true });
        (_space, _cpu, _idle) = (space, space.AttachCpu(), space.AttachCpu());
        _region = _space.Map(0, Length, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Populate);
    }

    /// <summary>Arms the region (not measured).</summary>
    [IterationSetup]
    public void Arm()
    {
        _next = _region;
        switch (Kind)
        {
            case Arming.DirtyLog:
                _space!.GetAndClearDirtyLog(_region, Length, _bitmap);
                break;
            case Arming.SoftDirtyClear:
                _space!.ClearSoftDirty();
                break;
            case Arming.KernelPagemapScan:
                _scan!.GetAndClear(_ranges);
                break;
        }
    }

    /// <summary>One store to the next page.</summary>
    [Benchmark]
    public void FirstWrite()
    {
        ulong at = _next;
        _next = at + 4096;
        if (_cpu is { } cpu)
        {
            cpu.Store(at, 2L);
        }
        else
        {
            *(long*)at = 2;
        }
    }

    /// <summary>Releases everything.</summary>
    [GlobalCleanup]
    public void GlobalCleanup()
    {
        _scan?.Dispose();
        if (OnHost)
        {
            LibC.Munmap((nint)_region, (nuint)Length);
        }
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }
}
