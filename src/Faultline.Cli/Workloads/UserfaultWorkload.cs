using System.Buffers.Binary;
using System.Diagnostics;
using Faultline.Cli.Paths;
using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// <c>userfault</c>: the round trip of a missing fault through a user-fault channel — the faulting thread blocks, a
/// handler thread reads the fault, copies a page in (<c>UFFDIO_COPY</c>) and wakes it, the access resumes — once per
/// page of a region (<see cref="DefaultPages"/> pages), checking each page's stamp. Faultline uses
/// <see cref="UserFaultChannel"/> with a <see cref="UserFaultCallback"/> handler; the kernel row runs
/// <c>Native/uffd_bench.c</c> (userfaultfd(2), a pthread handler doing blocking read and <c>UFFDIO_COPY</c>). Its
/// ns/fault is the wall-clock round trip per page on the faulting thread (it waits through the whole trip, and the
/// kernel's sleeps, so CPU time would hide it); that is also what its CPU-seconds figure holds. One thread.
/// </summary>
/// <param name="pages">Pages in the region.</param>
internal sealed class UserfaultWorkload(long pages = UserfaultWorkload.DefaultPages) : IWorkload
{
    /// <summary>Pages a run faults per iteration (16 MiB).</summary>
    public const long DefaultPages = 4096;

    /// <inheritdoc />
    public string Name => "userfault";

    /// <inheritdoc />
    public string Description => $"map {pages} pages, register them with a user-fault channel; read each: fault, handler copies the page, resume (ns per round trip)";

    /// <inheritdoc />
    public bool CountsFaults => true;

    /// <inheritdoc />
    public bool TimesItsFaults => true;

    /// <inheritdoc />
    public bool SingleThreaded => true;

    /// <inheritdoc />
    public long TouchedBytes(RunShape shape) => pages * (long)WorkloadSizes.Page;

    /// <inheritdoc />
    public string? Unavailable(PathKind path) => path == PathKind.Kernel ? KernelUserfaultProgram.Problem : null;

    /// <inheritdoc />
    public IWorkloadRun Start(IMemoryTarget target, RunShape shape) =>
        target is FaultlineTarget faultline ? new FaultlineRun(faultline, pages) : new KernelRun(pages);

    // The stamp uffd_bench.c copies into each page: the page's address hashed (Stamp.Of with no salt).
    private static long Stamp(ulong page) => Faultline.Cli.Paths.Stamp.Of(page, 0);

    private sealed class FaultlineRun(FaultlineTarget target, long pages) : IWorkloadRun
    {
        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            ulong length = (ulong)pages * WorkloadSizes.Page;
            var source = new byte[WorkloadSizes.Page];
            // At least one region per phase, however late a loaded machine starts this thread: every run reports one.
            do
            {
                ulong a = target.Map(length);
                using (var channel = new UserFaultChannel(target.Space))
                {
                    Errno registered = channel.Register(a, length, UserFaultModes.Missing);
                    if (registered != Errno.None)
                    {
                        stats.Fail($"userfault: UFFDIO_REGISTER answered {registered}");
                        return;
                    }
                    using var handler = new UserFaultCallback(channel, message =>
                    {
                        BinaryPrimitives.WriteInt64LittleEndian(source, Stamp(message.Address));
                        channel.Copy(message.Address, source);
                    });
                    long bad = 0;
                    long start = Stopwatch.GetTimestamp();
                    for (long i = 0; i < pages; i++)
                    {
                        ulong page = a + (ulong)i * WorkloadSizes.Page;
                        bad += memory.LoadLong(page) == Stamp(page) ? 0 : 1;
                    }
                    double wall = Stopwatch.GetElapsedTime(start).TotalSeconds;
                    stats.Faults += pages;
                    stats.FaultCpuSeconds += wall;
                    stats.FaultSeconds += wall;
                    if (bad != 0 || handler.Error is not null)
                    {
                        stats.Fail($"userfault: {bad} page(s) read wrong after their copy{(handler.Error is null ? "" : $"; handler: {handler.Error.Message}")}");
                    }
                }
                target.Unmap(a, length);
                stats.Ops++;
            }
            while (!phase.StopRequested);
        }
    }

    private sealed class KernelRun(long pages) : IWorkloadRun
    {
        public void Run(int worker, ThreadMemory memory, PhaseControl phase, WorkerStats stats)
        {
            do
            {
                KernelUserfaultFigures f = KernelUserfaultProgram.Run(pages);
                stats.Faults += f.Pages;
                stats.FaultCpuSeconds += f.WallSeconds;
                stats.FaultSeconds += f.WallSeconds;
                if (f.Mismatches != 0 || f.Handled != f.Pages)
                {
                    stats.Fail($"userfault (kernel): {f.Mismatches} page(s) read wrong, {f.Handled} of {f.Pages} faults handled");
                }
                stats.Ops++;
            }
            while (!phase.StopRequested);
        }
    }
}
