namespace Faultline.Host;

/// <summary>
/// The host kernel's soft-dirty tracking (<c>CONFIG_MEM_SOFT_DIRTY</c>): whether it exists, probed once, and
/// <c>echo 4 &gt; /proc/self/clear_refs</c>, which clears the soft-dirty state of this whole process.
/// </summary>
public static class HostSoftDirty
{
    private static readonly Lazy<bool> s_supported = new(Probe, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>
    /// True when a page written after <see cref="ClearRefs"/> reads soft-dirty in <c>/proc/self/pagemap</c> (bit 55);
    /// false on a kernel built without it, or when <c>clear_refs</c> cannot be written.
    /// </summary>
    public static bool Supported => s_supported.Value;

    /// <summary>Writes 4 to <c>/proc/self/clear_refs</c>; false when the file cannot be written.</summary>
    public static bool ClearRefs()
    {
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "4");
            return true;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static unsafe bool Probe()
    {
        nint page = LibC.Mmap(0, (nuint)Linux.PAGE_SIZE, Linux.PROT_READ | Linux.PROT_WRITE,
            Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS, -1, 0);
        if (page == -1)
        {
            return false;
        }
        try
        {
            Volatile.Write(ref *(long*)page, 1);
            if (!ClearRefs())
            {
                return false;
            }
            bool cleared = (HostPagemap.ReadEntry((ulong)page) & HostPagemap.PM_SOFT_DIRTY) == 0;
            Volatile.Write(ref *(long*)page, 2);
            return cleared && (HostPagemap.ReadEntry((ulong)page) & HostPagemap.PM_SOFT_DIRTY) != 0;
        }
        finally
        {
            _ = LibC.Munmap(page, (nuint)Linux.PAGE_SIZE);
        }
    }
}
