using System.Collections.Concurrent;
using Xunit;
using Xunit.Abstractions;

namespace Faultline.Tests.Stress;

/// <summary>
/// The shootdown correctness stress: Cpus load stamped data and store into pages while a mutator re-maps, protects and
/// unmaps them. No load ever returns another mapping's data or a freed frame's poison; no store lands in a freed
/// frame (poisoned frames are checked when reused); no store succeeds after a protect to read-only has returned;
/// no load succeeds after an unmap has returned.
/// </summary>
public class TlbShootdownStressTests
{
    private const int Slots = 6;
    private const int PagesPerSlot = 8;
    private const ulong Base = 0x3000_0000_0000;
    private const ulong SlotBytes = PagesPerSlot * 4096UL;
    private const long Unmapped = 0, ReadWrite = 1, ReadOnly = 2, Changing = 3;

    private readonly ITestOutputHelper _output;

    public TlbShootdownStressTests(ITestOutputHelper output) => _output = output;

    public static TheoryData<FaultPath, bool> Paths => new()
    {
        { FaultPath.MmapLock, false }, { FaultPath.Speculative, false }, { FaultPath.VmaLock, false },
        // Workers inside read scopes: the section stays held across accesses and writers wait for their quiescent points.
        { FaultPath.Speculative, true },
    };

    private static ulong SlotAddress(int slot) => Base + (ulong)slot * SlotBytes * 2;

    private static ulong Stamp(int slot, int page, long generation) => ((ulong)generation << 24) | ((uint)slot << 12) | (uint)page | (1UL << 63);

    [Theory]
    [MemberData(nameof(Paths))]
    public void NoStaleTranslationSurvivesAShootdown(FaultPath path, bool scoped)
    {
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = path, PhysicalMemoryBytes = 64 << 20, PoisonFreedFrames = true, TlbEntries = 64 });
        var state = new long[Slots]; // (generation << 2) | kind, published after the operation returned
        var errors = new ConcurrentQueue<string>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(2);
        long loads = 0, stores = 0, mutations = 0;

        var mutator = new Thread(() =>
        {
            using Cpu cpu = space.AttachCpu();
            var random = new Random(7);
            var generation = new long[Slots];
            while (DateTime.UtcNow < deadline)
            {
                int slot = random.Next(Slots);
                long current = Volatile.Read(ref state[slot]);
                long kind = current & 3;
                ulong at = SlotAddress(slot);
                int action = random.Next(3);
                // Workers judge an access only against a state published after the operation returned and still
                // published after the access; "changing" marks the window in between.
                Volatile.Write(ref state[slot], (current & ~3L) | Changing);
                if (kind == Unmapped || action == 0)
                {
                    long g = ++generation[slot];
                    space.Map(at, SlotBytes, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
                    for (int page = 0; page < PagesPerSlot; page++)
                    {
                        cpu.Store(at + (ulong)page * 4096, Stamp(slot, page, g));
                    }
                    Volatile.Write(ref state[slot], (g << 2) | ReadWrite);
                }
                else if (action == 1 && kind == ReadWrite)
                {
                    space.Protect(at, SlotBytes, Protection.Read);
                    Volatile.Write(ref state[slot], (current & ~3L) | ReadOnly);
                }
                else
                {
                    space.Unmap(at, SlotBytes);
                    Volatile.Write(ref state[slot], current & ~3L);
                }
                Interlocked.Increment(ref mutations);
            }
        });

        var workers = Enumerable.Range(0, 2).Select(id => new Thread(() =>
        {
            using Cpu cpu = space.AttachCpu();
            using CpuScope? scope = scoped ? cpu.EnterScope() : null;
            var random = new Random(id);
            for (int round = 1; DateTime.UtcNow < deadline; round++)
            {
                if (scope is not null && round % 64 == 0)
                {
                    // A scope's hits do not see shootdowns; its quiescent points let the mutator's writers finish.
                    scope.QuiescentPoint();
                }
                int slot = random.Next(Slots), page = random.Next(PagesPerSlot);
                ulong at = SlotAddress(slot) + (ulong)page * 4096;
                long before = Volatile.Read(ref state[slot]);
                ulong value;
                AccessOutcome loaded = scope is not null ? scope.TryLoad(at, out value) : cpu.TryLoad(at, out value);
                ulong storeAt = at + 2048 + (ulong)id * 8;
                AccessOutcome stored = scope is not null ? scope.TryStore(storeAt, (ulong)random.Next()) : cpu.TryStore(storeAt, (ulong)random.Next());
                long after = Volatile.Read(ref state[slot]);
                Interlocked.Increment(ref loads);
                Interlocked.Increment(ref stores);
                if (loaded == AccessOutcome.Ok && value != 0)
                {
                    long g = (long)((value >> 24) & ((1UL << 39) - 1));
                    bool mine = (value & (1UL << 63)) != 0 && ((value >> 12) & 0xFFF) == (ulong)slot && (value & 0xFFF) == (ulong)page;
                    if (!mine || g < (before >> 2) || g > (after >> 2) + 1 || value == 0x6B6B6B6B6B6B6B6BUL)
                    {
                        errors.Enqueue($"{path}: load of slot {slot} page {page} returned 0x{value:x} (state {before:x} → {after:x})");
                    }
                }
                if (before == after && (before & 3) != Changing)
                {
                    if ((before & 3) == Unmapped && before != 0 && loaded != AccessOutcome.SegvMapErr)
                    {
                        errors.Enqueue($"{path}: load after unmap of slot {slot} gave {loaded}");
                    }
                    if ((before & 3) == ReadOnly && stored != AccessOutcome.SegvAccErr)
                    {
                        errors.Enqueue($"{path}: store after protect to read-only of slot {slot} gave {stored}");
                    }
                }
            }
        })).ToList();

        mutator.Start();
        workers.ForEach(t => t.Start());
        Assert.True(mutator.Join(TimeSpan.FromSeconds(60)));
        workers.ForEach(t => Assert.True(t.Join(TimeSpan.FromSeconds(60))));
        for (int slot = 0; slot < Slots; slot++)
        {
            space.Unmap(SlotAddress(slot), SlotBytes);
        }
        _output.WriteLine($"{path}: {mutations} mutations, {loads} loads, {stores} stores, poison violations {space.PoisonViolations}");
        foreach (string error in errors.Take(10))
        {
            _output.WriteLine(error);
        }
        Assert.Empty(errors);
        Assert.True(mutations > 100 && loads > 1000);
        // Reuse every freed frame once so the poison check sees all of them.
        using (Cpu sweep = space.AttachCpu())
        {
            ulong big = space.Map(0, 32 << 20, Protection.ReadWrite, MapFlags.PrivateAnonymous);
            for (ulong p = big; p < big + (32 << 20); p += 4096)
            {
                sweep.Store(p, 1);
            }
        }
        Assert.Equal(0, space.PoisonViolations);
    }
}
