using System.Buffers.Binary;
using System.Diagnostics;
using Faultline.Backing;
using Faultline.Cli.Paths;

namespace Faultline.Cli.Running;

/// <summary>
/// The floor of a swap area: <paramref name="WritesPerSec"/> pages written and <paramref name="ReadsPerSec"/> read
/// per second when a fresh area of the same kind (a compressed area, or a file in the same directory) is written
/// then read back sequentially with nothing else — no faults, no reclaim, no page tables. Pages hold what the swap
/// workload's pages hold (one stamp, the rest zero), so the compressed area compresses them alike.
/// </summary>
internal readonly record struct SwapAreaFloor(double WritesPerSec, double ReadsPerSec)
{
    /// <summary>Pages per second that one page-out plus one swap-in each would move at the floor.</summary>
    public double RoundTripsPerSec => 1 / (1 / WritesPerSec + 1 / ReadsPerSec);

    /// <summary>Writes then reads <paramref name="pages"/> pages through a new area of <paramref name="kind"/>; throws when a page reads back wrong.</summary>
    public static SwapAreaFloor Measure(SwapAreaKind kind, long pages)
    {
        long slots = pages + 1;
        using ISwapArea area = kind == SwapAreaKind.File
            ? new FileSwapArea(Path.Combine(Path.GetTempPath(), $"faultline-swapfloor-{Environment.ProcessId}-{Guid.NewGuid():N}"), slots)
            : new CompressedSwapArea(slots);
        var page = new byte[PageGeometry.PageSize];
        long start = Stopwatch.GetTimestamp();
        for (long slot = 1; slot < slots; slot++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(page, Stamp.Of((ulong)slot << 12, 0));
            if (!area.TryWrite(slot, page))
            {
                throw new IOException($"swap floor: writing slot {slot} failed");
            }
        }
        double write = Stopwatch.GetElapsedTime(start).TotalSeconds;
        start = Stopwatch.GetTimestamp();
        for (long slot = 1; slot < slots; slot++)
        {
            area.Read(slot, page);
            if (BinaryPrimitives.ReadInt64LittleEndian(page) != Stamp.Of((ulong)slot << 12, 0))
            {
                throw new InvalidDataException($"swap floor: slot {slot} read back wrong");
            }
        }
        double read = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return new SwapAreaFloor(pages / write, pages / read);
    }
}
