using Faultline.Cli.Paths;

namespace Faultline.Cli.Stress;

/// <summary>
/// The loops of <c>faultline stress</c>. Every mapping is at least two pages, so a one-page hole punched by a worker
/// can never be filled by another thread's mapping: an access there must be SEGV_MAPERR.
/// </summary>
internal static class StressWorkers
{
    private const ulong Page = 4096;

    /// <summary>
    /// A faulting worker: private mappings of random size (write or read-then-write first touch, stamps checked),
    /// mprotect read-only (stores must be SEGV_ACCERR, loads still see the stamps), a punched hole (SEGV_MAPERR, the
    /// rest intact), and a MAP_FIXED remap of its own stripe of the shared region (fresh zero pages).
    /// </summary>
    public static void Faulter(int worker, AddressSpace space, Cpu cpu, ulong stripe, ulong stripeLength, Func<bool> stop, StressStats stats)
    {
        var random = new Random(1000 + worker);
        long iteration = 0;
        while (!stop())
        {
            iteration++;
            long salt = ((long)worker << 40) ^ iteration * 0x2545F4914F6CDD1DL;
            int pages = random.Next(2, 513);
            ulong length = (ulong)pages * Page;
            ulong a = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            if (random.Next(4) == 0)
            {
                // Read first: the zero frame is mapped, then the write faults again (write-protect fault).
                for (int p = 0; p < pages; p++)
                {
                    ulong at = a + (ulong)p * Page;
                    long value = cpu.Load<long>(at + 8);
                    stats.Check(value == 0, () => $"fresh page 0x{at:x} reads {value:x}, not zero");
                }
            }
            StampAndVerify(cpu, a, pages, salt, stats);

            switch (random.Next(3))
            {
                case 0:
                    space.Protect(a, length, Protection.Read);
                    ulong target = a + (ulong)random.Next(pages) * Page;
                    AccessOutcome denied = cpu.TryStore(target, 1L);
                    stats.Check(denied == AccessOutcome.SegvAccErr, () => $"store to read-only 0x{target:x}: {denied}, expected SegvAccErr");
                    Verify(cpu, a, pages, salt, stats);
                    space.Protect(a, length, Protection.ReadWrite);
                    StampAndVerify(cpu, a, pages, salt ^ 0x55, stats);
                    salt ^= 0x55;
                    break;
                case 1 when pages >= 3:
                    int hole = random.Next(1, pages - 1);
                    ulong holeAt = a + (ulong)hole * Page;
                    space.Unmap(holeAt, Page);
                    AccessOutcome gone = cpu.TryLoad(holeAt, out long _);
                    stats.Check(gone == AccessOutcome.SegvMapErr, () => $"load from unmapped 0x{holeAt:x}: {gone}, expected SegvMapErr");
                    Verify(cpu, a, hole, salt, stats);
                    Verify(cpu, holeAt + Page, pages - hole - 1, salt, stats);
                    break;
            }
            space.Unmap(a, length);

            if (iteration % 4 == 0)
            {
                // Replace the stripe (munmap + mmap under one write lock); its pages must come back zero.
                space.Map(stripe, stripeLength, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                int stripePages = (int)(stripeLength / Page);
                int probe = random.Next(stripePages);
                long old = cpu.Load<long>(stripe + (ulong)probe * Page);
                stats.Check(old == 0, () => $"stripe page 0x{stripe + (ulong)probe * Page:x} after MAP_FIXED reads {old:x}, not zero");
                StampAndVerify(cpu, stripe, stripePages, salt, stats);
            }
            stats.Iterations++;
        }
    }

    /// <summary>
    /// A churn worker: map, split by mprotect, merge back, unmap small unrelated regions (fresh ones must read zero),
    /// and flip the protection of the shared region's churn zone, splitting and merging the VMA next to the stripes.
    /// </summary>
    public static void Churner(int worker, AddressSpace space, Cpu cpu, ulong zone, ulong zoneLength, Func<bool> stop, StressStats stats)
    {
        var random = new Random(5000 + worker);
        while (!stop())
        {
            int pages = random.Next(2, 65);
            ulong length = (ulong)pages * Page;
            ulong a = space.Map(0, length, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            long value = cpu.Load<long>(a + length - 8);
            stats.Check(value == 0, () => $"fresh churn page at 0x{a + length - 8:x} reads {value:x}, not zero");
            if (pages >= 3)
            {
                space.Protect(a + Page, Page, Protection.Read);
                space.Protect(a + Page, Page, Protection.ReadWrite);
            }
            space.Unmap(a, length);

            ulong piece = zone + (ulong)random.Next((int)(zoneLength / Page) - 1) * Page;
            space.Protect(piece, 2 * Page, Protection.Read);
            AccessOutcome read = cpu.TryLoad(piece, out long zero);
            stats.Check(read == AccessOutcome.Ok && zero == 0, () => $"churn zone 0x{piece:x}: {read}, {zero:x}");
            space.Protect(piece, 2 * Page, Protection.ReadWrite);
            stats.Iterations++;
        }
    }

    private static void StampAndVerify(Cpu cpu, ulong a, int pages, long salt, StressStats stats)
    {
        for (int p = 0; p < pages; p++)
        {
            ulong at = a + (ulong)p * Page;
            cpu.Store(at, Stamp.Of(at, salt));
        }
        Verify(cpu, a, pages, salt, stats);
    }

    private static void Verify(Cpu cpu, ulong a, int pages, long salt, StressStats stats)
    {
        for (int p = 0; p < pages; p++)
        {
            ulong at = a + (ulong)p * Page;
            long value = cpu.Load<long>(at);
            stats.Check(value == Stamp.Of(at, salt), () => $"page 0x{at:x} reads {value:x}, expected {Stamp.Of(at, salt):x}");
        }
    }
}
