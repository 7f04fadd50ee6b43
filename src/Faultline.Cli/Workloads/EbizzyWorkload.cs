using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>ebizzy</c>-style: each thread maps a chunk of random size (64 KiB to 4 MiB), fills it with sorted records (one
/// 8-byte key every 256 bytes, so every page faults), runs binary searches for random present and absent keys
/// (TLB-unfriendly loads), checks each answer, and unmaps. One op is one chunk.
/// </summary>
internal sealed class EbizzyWorkload : IWorkload
{
    private const int MinPages = 16;
    private const int MaxPages = 1024;
    private const int RecordStride = 256;
    private const int SearchesPerChunk = 64;

    /// <inheritdoc />
    public string Name => "ebizzy";

    /// <inheritdoc />
    public string Description => "per thread: map a random-size chunk, fill records, binary-search them, unmap (chunks/s)";

    /// <inheritdoc />
    public bool CountsFaults => false;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => shape.Threads * (long)MaxPages * (long)WorkloadSizes.Page;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) => new WorkloadRun(target);

    private sealed class WorkloadRun(IMemoryTarget target) : IWorkloadRun
    {
        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            var random = new Random(unchecked(worker * 7919 + 17));
            while (!phase.StopRequested)
            {
                int pages = random.Next(MinPages, MaxPages + 1);
                ulong length = (ulong)pages * WorkloadSizes.Page;
                long records = (long)(length / RecordStride);
                long baseKey = random.NextInt64(0, long.MaxValue / 4) & ~1L;
                ulong a = target.Map(length);
                for (long i = 0; i < records; i++)
                {
                    memory.StoreLong(a + (ulong)(i * RecordStride), baseKey + 2 * i);
                }
                for (int s = 0; s < SearchesPerChunk; s++)
                {
                    long index = random.NextInt64(records);
                    bool present = (s & 3) != 0;
                    long key = baseKey + 2 * index + (present ? 0 : 1);
                    long found = Search(memory, a, records, key);
                    if (present ? found != index : found >= 0)
                    {
                        stats.Fail($"ebizzy: search for key {key} in chunk 0x{a:x} ({pages} pages) returned {found}, expected {(present ? index : -1)}");
                    }
                }
                target.Unmap(a, length);
                stats.Ops++;
                stats.Faults += pages;
            }
        }

        private static long Search(ThreadMemory memory, ulong a, long records, long key)
        {
            long lo = 0, hi = records - 1;
            while (lo <= hi)
            {
                long mid = lo + ((hi - lo) >> 1);
                long value = memory.LoadLong(a + (ulong)(mid * RecordStride));
                if (value == key)
                {
                    return mid;
                }
                if (value < key)
                {
                    lo = mid + 1;
                }
                else
                {
                    hi = mid - 1;
                }
            }
            return -1;
        }
    }
}
