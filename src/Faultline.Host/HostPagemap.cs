using Microsoft.Win32.SafeHandles;

namespace Faultline.Host;

/// <summary>
/// Reads <c>/proc/self/pagemap</c>: one little-endian 64-bit entry per virtual page. The handle is
/// opened once and kept for the process lifetime because opening /proc files dominates the cost
/// of a single-entry read; pread (RandomAccess) is thread-safe, so no locking is needed.
/// </summary>
public static class HostPagemap
{
    /// <summary>Bit 63: page present in RAM (also set for the shared zero page).</summary>
    public const ulong PM_PRESENT = 1UL << 63;
    /// <summary>Bit 62: page swapped out.</summary>
    public const ulong PM_SWAP = 1UL << 62;
    /// <summary>Bit 61: file page or shared anonymous page.</summary>
    public const ulong PM_FILE = 1UL << 61;
    /// <summary>Bit 58: page is a guard region (MADV_GUARD_INSTALL, 6.15+).</summary>
    public const ulong PM_GUARD_REGION = 1UL << 58;
    /// <summary>Bit 57: userfaultfd write-protected.</summary>
    public const ulong PM_UFFD_WP = 1UL << 57;
    /// <summary>Bit 56: page exclusively mapped (mapcount 1).</summary>
    public const ulong PM_MMAP_EXCLUSIVE = 1UL << 56;
    /// <summary>Bit 55: soft-dirty.</summary>
    public const ulong PM_SOFT_DIRTY = 1UL << 55;
    /// <summary>Bits 0-54: PFN when present (zeroed without CAP_SYS_ADMIN), swap type/offset when swapped.</summary>
    public const ulong PM_PFN_MASK = (1UL << 55) - 1;

    private static readonly Lazy<SafeFileHandle> Handle = new(
        () => File.OpenHandle("/proc/self/pagemap", FileMode.Open, FileAccess.Read, FileShare.ReadWrite),
        LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Reads the raw pagemap entry of the page containing <paramref name="addr"/>.</summary>
    /// <param name="addr">Any address in the page.</param>
    /// <returns>The 64-bit entry (0 for an unmapped or never-touched page).</returns>
    public static ulong ReadEntry(ulong addr)
    {
        Span<ulong> one = stackalloc ulong[1];
        ReadEntries(addr, one);
        return one[0];
    }

    /// <summary>
    /// Reads consecutive entries starting at the page containing <paramref name="start"/>, one per
    /// element of <paramref name="entries"/>, in a single pread.
    /// </summary>
    /// <param name="start">Any address in the first page.</param>
    /// <param name="entries">Receives one entry per page.</param>
    public static void ReadEntries(ulong start, Span<ulong> entries)
    {
        Span<byte> bytes = System.Runtime.InteropServices.MemoryMarshal.AsBytes(entries);
        long offset = (long)((start >> Linux.PAGE_SHIFT) * 8);
        int done = 0;
        while (done < bytes.Length)
        {
            int n = RandomAccess.Read(Handle.Value, bytes[done..], offset + done);
            if (n <= 0)
            {
                bytes[done..].Clear();
                break;
            }

            done += n;
        }
    }

    /// <summary>True if the page containing <paramref name="addr"/> is present (bit 63).</summary>
    /// <param name="addr">Any address in the page.</param>
    /// <returns>Whether the page is resident (the zero page counts as present).</returns>
    public static bool IsPresent(ulong addr) => (ReadEntry(addr) & PM_PRESENT) != 0;

    /// <summary>True if the page containing <paramref name="addr"/> is swapped out (bit 62).</summary>
    /// <param name="addr">Any address in the page.</param>
    /// <returns>Whether the page is in swap.</returns>
    public static bool IsSwapped(ulong addr) => (ReadEntry(addr) & PM_SWAP) != 0;

    /// <summary>Counts present pages in [<paramref name="start"/>, <paramref name="end"/>).</summary>
    /// <param name="start">Page-aligned start.</param>
    /// <param name="end">End (exclusive).</param>
    /// <returns>The number of present pages.</returns>
    public static int CountPresent(ulong start, ulong end)
    {
        int count = 0;
        Span<ulong> chunk = stackalloc ulong[512];
        for (ulong a = start; a < end;)
        {
            int pages = (int)Math.Min(512UL, (end - a + Linux.PAGE_SIZE - 1) >> Linux.PAGE_SHIFT);
            Span<ulong> s = chunk[..pages];
            ReadEntries(a, s);
            foreach (ulong e in s)
            {
                if ((e & PM_PRESENT) != 0)
                {
                    count++;
                }
            }

            a += (ulong)pages << Linux.PAGE_SHIFT;
        }

        return count;
    }
}
