using Faultline.Paging;

namespace Faultline.Tests.Support;

/// <summary>Small helpers the fault-path tests share: fixed mappings and counter deltas.</summary>
internal static class SpaceHelpers
{
    /// <summary>A private anonymous MAP_FIXED mapping.</summary>
    public static ulong MapFixed(AddressSpace space, ulong address, ulong length, Protection protection = Protection.ReadWrite) =>
        space.Map(address, length, protection, MapFlags.PrivateAnonymous | MapFlags.Fixed);

    /// <summary>
    /// True when a page-table entry maps a frame at <paramref name="address"/>, whether a VMA covers it or not (which
    /// <see cref="AddressSpace.IsResident"/> does not look at): for "nothing left behind" checks while no writer runs.
    /// </summary>
    public static bool HasPte(AddressSpace space, ulong address) =>
        Pte.MapsFrame(space.Descriptor.PageTable.Lookup(address, space.Descriptor.Probes));

    /// <summary>A copy of the counters, to take deltas against.</summary>
    public static Dictionary<string, long> Counters(AddressSpace space) => new(space.GetCounters());

    /// <summary>The counter of faults a path completed itself, without falling back to the mmap-lock path.</summary>
    public static string HandledOnPathCounter(FaultPath path) => path switch
    {
        FaultPath.Speculative => "speculative_pgfault",
        FaultPath.VmaLock => "vma_lock_success",
        _ => "mmap_lock_fault",
    };

    /// <summary>How much a counter moved since <paramref name="before"/>.</summary>
    public static long Delta(Dictionary<string, long> before, AddressSpace space, string name) =>
        space.GetCounters()[name] - before[name];
}
