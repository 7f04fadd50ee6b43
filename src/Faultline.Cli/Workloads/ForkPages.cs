using System.Diagnostics;
using Faultline.Cli.Paths;
using Faultline.Host;

namespace Faultline.Cli.Workloads;

/// <summary>
/// The page layout of the fork workloads and its checks. Word 0 of every page holds the stamp written before the fork
/// (both sides must still see it after their copy-on-write faults: the copy carries the old contents); word 1 is
/// written by the child (<see cref="ForkWorkload"/>) or by the parent's faulting threads (<see cref="ForkChurnWorkload"/>);
/// word 2 by the parent after the child is gone. A side that did not write a word must read zero there: the other
/// side's writes never show through.
/// </summary>
internal static class ForkPages
{
    /// <summary>
    /// Pages in [<paramref name="address"/>, +<paramref name="pages"/>) whose words 0, 1, 2 are not the stamps of
    /// <paramref name="populated"/>, <paramref name="word1"/>, <paramref name="word2"/> (a null salt: the word must be zero).
    /// </summary>
    public static long CountWrong(ThreadMemory memory, ulong address, long pages, long populated, long? word1, long? word2)
    {
        long bad = 0;
        for (long i = 0; i < pages; i++)
        {
            ulong page = address + (ulong)i * WorkloadSizes.Page;
            if (memory.LoadLong(page) != Stamp.Of(page, populated)
                || memory.LoadLong(page + 8) != (word1 is { } s1 ? Stamp.Of(page, s1) : 0)
                || memory.LoadLong(page + 16) != (word2 is { } s2 ? Stamp.Of(page, s2) : 0))
            {
                bad++;
            }
        }
        return bad;
    }

    /// <summary>Runs <paramref name="loop"/> and returns the calling thread's CPU seconds (RUSAGE_THREAD) and wall seconds.</summary>
    public static (double CpuSeconds, double WallSeconds) Timed(Action loop)
    {
        double cpuBefore = LibC.Usage(LibC.RUSAGE_THREAD).CpuSeconds;
        long start = Stopwatch.GetTimestamp();
        loop();
        double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
        return (LibC.Usage(LibC.RUSAGE_THREAD).CpuSeconds - cpuBefore, wall);
    }
}
