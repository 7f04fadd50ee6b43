using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.VmStat;
using Faultline.Faults;
using Faultline.Mm;
using Faultline.Paging;
using Faultline.Tests.Support;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The speculative fault path step by step (<c>handle_speculative_fault</c> of the SPF series): when it runs at all,
/// each bail-out and the counter it is traced with, speculative page-table allocation, and <c>pte_unmap_same</c>.
/// </summary>
public sealed class SpeculativePathTests
{
    private const ulong Page = 4096;
    private const ulong PmdSpan = 2UL << 20;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(bool tableAllocation = true) => new(new FaultlineOptions
    {
        FaultPath = FaultPath.Speculative,
        PhysicalMemoryBytes = 64 << 20,
        SpeculativePageTableAllocation = tableAllocation,
    });

    // A writer's replacement of the VMA containing `address`, as the control plane does it: write-lock and open the
    // old VMA's sequence, detach it, attach the new one, publish, close the sequence with the write section.
    private static void ReplaceVma(AddressSpace space, ulong address, Func<MemoryDescriptor, Vma, Vma> replacement)
    {
        MemoryDescriptor mm = space.Descriptor;
        mm.MmapLock.EnterWrite();
        try
        {
            Vma old = mm.Tree.FindContaining(address)!;
            old.StartWrite();
            old.Sequence.BeginWrite();
            mm.Tree.Remove(old.Start);
            old.MarkDetached();
            Vma created = replacement(mm, old);
            created.AnonVma = old.AnonVma;
            created.StartWrite();
            created.MarkAttached();
            mm.Tree.Insert(created);
            mm.Tree.Publish();
            old.Sequence.EndWrite();
        }
        finally
        {
            mm.MmapLock.ExitWrite();
        }
    }

    // 7. mm_users == 1: a single thread cannot race itself, the speculative path is skipped.
    [Fact]
    public void SingleAttachedCpuNeverSpeculates()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);
        for (int i = 0; i < 8; i++)
        {
            cpu.Store(a + (ulong)i * Page, i);
        }

        Assert.Equal(8, Delta(before, space, "spf_single_user"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(8, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(0, Delta(before, space, "spf_vma_notsup"));

        // A second user turns it on; detaching it turns it off again.
        using (Cpu second = space.AttachCpu())
        {
            cpu.Store(a + 8 * Page, 8);
        }
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        cpu.Store(a + 9 * Page, 9);
        Assert.Equal(9, Delta(before, space, "spf_single_user"));
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
    }

    // The speculative path takes no mmap_lock at all: it completes while a writer holds it.
    [Fact]
    public void SpeculativeFaultCompletesWhileMmapLockIsWriteHeld()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu toucher = space.AttachCpu();
        using Cpu cpu = space.AttachCpu();
        toucher.Store(a, 1L);
        Dictionary<string, long> before = Counters(space);

        MmapLock mmapLock = space.Descriptor.MmapLock;
        mmapLock.EnterWrite();
        AccessOutcome outcome;
        try
        {
            var fault = new ThreadRunner<AccessOutcome>(() => cpu.TryStore(a + 3 * Page, 33L));
            outcome = fault.Join(10_000);
        }
        finally
        {
            mmapLock.ExitWrite();
        }

        Assert.Equal(AccessOutcome.Ok, outcome);
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(33L, toucher.Load<long>(a + 3 * Page));
    }

    // 9. A VMA without anon_vma: the first write fault bails out (spf_vma_notsup) and the classic path creates it;
    // the next fault in the VMA is speculative.
    [Fact]
    public void VmaWithoutAnonVmaBailsOutUntilTheClassicPathCreatesIt()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        Assert.Null(space.Descriptor.Tree.LookupLockless(a)!.AnonVma);
        Dictionary<string, long> before = Counters(space);

        cpu.Store(a, 1L);
        Assert.Equal(1, Delta(before, space, "spf_vma_notsup"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.NotNull(space.Descriptor.Tree.LookupLockless(a)!.AnonVma);

        cpu.Store(a + Page, 2L);
        Assert.Equal(1, Delta(before, space, "spf_vma_notsup"));
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
    }

    // Anonymous memory that opts out of the speculative whitelist; its faults go through do_anonymous_page.
    private sealed class NotSpeculativeSafeBacking : Faultline.Backing.IBacking
    {
        public bool IsAnonymous => true;
        public bool IsSpeculativeSafe => false;
        public string MapsName => string.Empty;

        public Faultline.Backing.BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn) =>
            throw new InvalidOperationException("anonymous memory faults through do_anonymous_page");

        public void Opened(ulong pageOffset, ulong pages)
        {
        }

        public void Closed(ulong pageOffset, ulong pages)
        {
        }

        public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset) => true;
    }

    // 9. Each remaining bail-out of step 4, staged on a VMA that has its anon_vma, is traced as spf_vma_notsup and
    // handed to the classic path, which gives the final answer.
    [Theory]
    [InlineData("GrowsDown", AccessOutcome.Ok)]
    [InlineData("UserfaultMissing", AccessOutcome.BusError)] // no user-fault handler: an unhandled uffd is SIGBUS
    [InlineData("Interleave", AccessOutcome.Ok)]
    [InlineData("NotSpeculativeSafeBacking", AccessOutcome.Ok)]
    public void UnsupportedVmaBailsOutAsNotSupported(string staging, AccessOutcome expected)
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        // VMAs are never edited in place: the staged VMA replaces the original, keeping its anon_vma.
        ReplaceVma(space, a, (mm, vma) => staging switch
        {
            "GrowsDown" => mm.CreateVma(vma.Start, vma.End, vma.PageOffset, vma.Flags | VmFlags.GrowsDown, vma.Backing),
            "UserfaultMissing" => mm.CreateVma(vma.Start, vma.End, vma.PageOffset, vma.Flags | VmFlags.UserfaultMissing, vma.Backing),
            "Interleave" => mm.CreateVma(vma.Start, vma.End, vma.PageOffset, vma.Flags, vma.Backing, MemoryPolicy.Interleave),
            "NotSpeculativeSafeBacking" => mm.CreateVma(vma.Start, vma.End, vma.PageOffset, vma.Flags, new NotSpeculativeSafeBacking()),
            _ => throw new ArgumentOutOfRangeException(nameof(staging)),
        });
        Dictionary<string, long> before = Counters(space);

        Assert.Equal(expected, cpu.TryStore(a + 2 * Page, 2L));
        Assert.Equal(1, Delta(before, space, "spf_vma_notsup"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
    }

    // 9. An access error on a validated snapshot is final: SIGSEGV from the speculative path itself (spf_vma_access),
    // no fallback, no mmap_lock.
    [Fact]
    public void AccessErrorOnTheSnapshotIsSigsegvWithoutFallback()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        space.Protect(a, 16 * Page, Protection.Read); // the new VMA keeps the anon_vma
        Assert.NotNull(space.Descriptor.Tree.LookupLockless(a)!.AnonVma);
        Dictionary<string, long> before = Counters(space);

        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryStore(a + 2 * Page, 2L));
        Assert.Equal(1, Delta(before, space, "spf_vma_access"));
        Assert.Equal(1, Delta(before, space, "segv_accerr"));
        Assert.Equal(0, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "mmap_lock_fault"));
        Assert.False(space.IsResident(a + 2 * Page));
    }

    // Step 3: an odd sequence (a writer inside) aborts at once as spf_vma_changed.
    [Fact]
    public void OddSequenceAbortsAsVmaChanged()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        Vma vma = space.Descriptor.Tree.LookupLockless(a)!;
        Dictionary<string, long> before = Counters(space);

        vma.Sequence.BeginWrite();
        try
        {
            Assert.Equal(AccessOutcome.Ok, cpu.TryStore(a + Page, 5L));
        }
        finally
        {
            vma.Sequence.EndWrite();
        }
        Assert.Equal(1, Delta(before, space, "spf_vma_changed"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));

        cpu.Store(a + 2 * Page, 6L);
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
    }

    // Step 2: no VMA at the address: spf_vma_novma, and the classic path answers SEGV_MAPERR.
    [Fact]
    public void NoVmaFallsBackToMapErr()
    {
        using var space = NewSpace();
        MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        Dictionary<string, long> before = Counters(space);

        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryStore(Base + 16 * Page, 1L));
        Assert.Equal(1, Delta(before, space, "spf_vma_novma"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(1, Delta(before, space, "segv_maperr"));
    }

    // 8. Speculative page-table allocation on: the first fault of an empty 2 MiB region completes speculatively.
    [Fact]
    public void TableAllocationOnCompletesFirstFaultOfAnEmptyPmdSpeculatively()
    {
        using var space = NewSpace(tableAllocation: true);
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        int tables = space.PageTablePages;
        Dictionary<string, long> before = Counters(space);

        cpu.Store(a + PmdSpan + 7 * Page, 7L);
        Assert.Equal(1, Delta(before, space, "spf_table_alloc"));
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(0, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "spf_pmd_changed"));
        Assert.Equal(0, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(tables + 1, space.PageTablePages);
        Assert.Equal(7L, second.Load<long>(a + PmdSpan + 7 * Page));
    }

    // 8. Across a 1 GiB boundary the PMD table is missing too: both levels are allocated speculatively.
    [Fact]
    public void TableAllocationOnAllocatesEveryMissingLevel()
    {
        using var space = NewSpace(tableAllocation: true);
        ulong a = MapFixed(space, Base - PmdSpan, 2 * PmdSpan); // [1 GiB - 2 MiB, 1 GiB + 2 MiB)
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        int tables = space.PageTablePages;
        Dictionary<string, long> before = Counters(space);

        cpu.Store(Base + 3 * Page, 3L);
        Assert.Equal(2, Delta(before, space, "spf_table_alloc"));
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(tables + 2, space.PageTablePages);
        Assert.Equal(3L, second.Load<long>(Base + 3 * Page));
    }

    // 8. Speculative page-table allocation off: an empty PMD aborts (spf_pmd_changed) and the classic path
    // instantiates it.
    [Fact]
    public void TableAllocationOffFallsBackOnAnEmptyPmd()
    {
        using var space = NewSpace(tableAllocation: false);
        ulong a = MapFixed(space, Base, 2 * PmdSpan);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        Dictionary<string, long> before = Counters(space);

        cpu.Store(a + PmdSpan + 7 * Page, 7L);
        Assert.Equal(1, Delta(before, space, "spf_pmd_changed"));
        Assert.Equal(1, Delta(before, space, "spf_fallback"));
        Assert.Equal(0, Delta(before, space, "spf_table_alloc"));
        Assert.Equal(0, Delta(before, space, "speculative_pgfault"));
        Assert.Equal(1, Delta(before, space, "mmap_lock_fault"));
        Assert.Equal(7L, second.Load<long>(a + PmdSpan + 7 * Page));

        // Once the PMD exists, the next fault in it is speculative.
        cpu.Store(a + PmdSpan + 8 * Page, 8L);
        Assert.Equal(1, Delta(before, space, "speculative_pgfault"));
    }

    // 10. pte_unmap_same (SPF v9, 2018-04): Ok when the PTE is still orig_pte, PtNotSame when it changed, Retry when the
    // speculative lock finds the VMA changed. The PTE lock is never left held.
    private static FaultContext ContextAt(AddressSpace space, FaultCpu faultCpu, ulong address, bool speculative)
    {
        MemoryDescriptor mm = space.Descriptor;
        var fault = new FaultContext(mm, faultCpu, address, AccessKind.Read);
        Assert.Equal(WalkStatus.Ok, mm.PageTable.WalkLockless(address, out fault.Location, out fault.OriginalPte));
        fault.HasPteTable = true;
        if (speculative)
        {
            Vma vma = mm.Tree.LookupLockless(address)!;
            fault.Flags = (fault.Flags & ~(FaultFlags.AllowRetry | FaultFlags.Killable)) | FaultFlags.Speculative;
            fault.Vma = vma;
            fault.Sequence = vma.Sequence.ReadRaw();
            fault.VmaFlags = vma.Flags;
            fault.Protection = vma.PageProtection;
        }
        else
        {
            fault.SnapshotStable(mm.Tree.LookupLockless(address)!);
        }
        return fault;
    }

    private static bool PteLockHeld(AddressSpace space, in FaultContext fault) =>
        SpinWord.IsHeld(ref space.Descriptor.PageTable.PteLock(fault.Location.PteTable));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PteUnmapSameIsOkWhenThePteIsUnchanged(bool speculative)
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        var faultCpu = new FaultCpu(space.Descriptor.Memory, space.Descriptor.Rcu);
        FaultContext fault = ContextAt(space, faultCpu, a, speculative);

        Assert.Equal(FaultResult.Ok, MemoryFaultHandler.PteUnmapSame(ref fault));
        Assert.False(PteLockHeld(space, fault));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PteUnmapSameIsPtNotSameWhenAnotherThreadChangedThePte(bool speculative)
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        Assert.Equal(0L, cpu.Load<long>(a + 2 * Page)); // the zero frame, read-only
        var faultCpu = new FaultCpu(space.Descriptor.Memory, space.Descriptor.Rcu);
        FaultContext fault = ContextAt(space, faultCpu, a + 2 * Page, speculative);
        second.Store(a + 2 * Page, 9L); // wp_page_copy replaces the PTE

        Assert.NotEqual(fault.OriginalPte, space.Descriptor.PageTable.ReadPte(fault.Location));
        Assert.Equal(FaultResult.PtNotSame, MemoryFaultHandler.PteUnmapSame(ref fault));
        Assert.False(PteLockHeld(space, fault));
    }

    [Fact]
    public void PteUnmapSameIsRetryWhenTheVmaChangedUnderASpeculativeFault()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        var faultCpu = new FaultCpu(space.Descriptor.Memory, space.Descriptor.Rcu);
        FaultContext fault = ContextAt(space, faultCpu, a, speculative: true);
        space.Protect(a + 8 * Page, 4 * Page, Protection.Read); // splits: the fault's VMA is replaced

        Assert.Equal(FaultResult.Retry, MemoryFaultHandler.PteUnmapSame(ref fault));
        Assert.Equal(1, faultCpu.Counters.Read(VmEvent.SpeculativeVmaChanged));
        Assert.False(PteLockHeld(space, fault));

        // The classic variant does not care about the VMA: the PTE is the same.
        FaultContext classic = ContextAt(space, faultCpu, a, speculative: false);
        Assert.Equal(FaultResult.Ok, MemoryFaultHandler.PteUnmapSame(ref classic));
    }

    // do_swap_page translates PtNotSame to 0 (Laurent Dufour's answer to Jerome Glisse, SPF v9 pte_unmap_same thread, 2018-04): it never escapes
    // handle_pte_fault.
    [Fact]
    public void HandlePteFaultNeverReportsPtNotSame()
    {
        using var space = NewSpace();
        ulong a = MapFixed(space, Base, 16 * Page);
        using Cpu cpu = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        cpu.Store(a, 1L);
        var faultCpu = new FaultCpu(space.Descriptor.Memory, space.Descriptor.Rcu);
        FaultContext fault = ContextAt(space, faultCpu, a, speculative: true);
        fault.OriginalPte = 0x2; // a (stale) swap entry: not none, not mapping a frame

        Assert.Equal(FaultResult.Ok, MemoryFaultHandler.HandlePteFault(ref fault));
        Assert.False(PteLockHeld(space, fault));
    }
}
