namespace Faultline;

/// <summary>
/// The <see cref="System.Diagnostics.Metrics.Meter"/> every address space publishes on: one meter for the process,
/// each measurement tagged with the address space (<see cref="AddressSpaceTag"/> = <see cref="AddressSpace.Id"/>).
/// </summary>
/// <remarks>
/// <para>Instruments (observable: read when a listener collects, nothing is counted twice), all of type <see cref="long"/>:</para>
/// <list type="bullet">
/// <item><description>one per <see cref="VmCounters.All"/> entry, named <c>faultline.vmstat.</c> and the counter's name
/// (<c>faultline.vmstat.pgfault</c>, <c>faultline.vmstat.vma_lock_success</c>): an observable counter for
/// <see cref="VmCounterKind.Counter"/>, an observable up-down counter for <see cref="VmCounterKind.Level"/>;</description></item>
/// <item><description><c>faultline.mm.vmas</c> (<c>{vma}</c>, up-down counter): <see cref="AddressSpace.MapCount"/>;</description></item>
/// <item><description><c>faultline.mm.cpus</c> (<c>{cpu}</c>, up-down counter): <see cref="AddressSpace.CpuCount"/>;</description></item>
/// <item><description><c>faultline.mm.page_tables</c> (<c>{page}</c>, up-down counter): <see cref="AddressSpace.PageTablePages"/>;</description></item>
/// <item><description><c>faultline.memcg.current</c> (<c>{page}</c>, up-down counter): the pages charged to
/// <see cref="AddressSpace.MemoryGroup"/> (<c>memory.current</c>), 0 without one; address spaces of one group report the
/// same value.</description></item>
/// </list>
/// <para>
/// With OpenTelemetry: <c>AddMeter(FaultlineMeter.Name)</c>; with <c>dotnet-counters</c>:
/// <c>dotnet-counters monitor --counters Faultline -p PID</c>. A disposed address space stops being reported.
/// </para>
/// <para>
/// Thread safety: the meter is created once per process and never disposed; instruments are observed on the
/// collecting thread, which reads each address space's counters as <see cref="AddressSpace.GetCounters"/> does, and
/// may run concurrently with any use of the address spaces.
/// </para>
/// </remarks>
public static class FaultlineMeter
{
    /// <summary>The meter's name, to subscribe to.</summary>
    public const string Name = "Faultline";

    /// <summary>The tag on every measurement that names its address space; the value is <see cref="AddressSpace.Id"/> (a <see cref="long"/>).</summary>
    public const string AddressSpaceTag = "faultline.address_space.id";

    /// <summary>The prefix of the instruments that publish <see cref="VmCounters"/>.</summary>
    public const string VmStatPrefix = "faultline.vmstat.";
}
