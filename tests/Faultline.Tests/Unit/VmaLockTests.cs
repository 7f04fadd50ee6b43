using Faultline.Areas;
using Faultline.Backing;
using Faultline.Concurrency;
using Faultline.Mm;
using Faultline.Tests.Support;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// The per-VMA lock itself (<c>vm_refcnt</c> + <c>vm_lock_seq</c>, today's include/linux/mmap_lock.h and
/// mm/mmap_lock.c), driven directly: VMAs come from <c>mm.CreateVma</c> and the test holds the address space's
/// <see cref="MmapLock"/> itself.
/// </summary>
public sealed class VmaLockTests : IDisposable
{
    private const ulong Page = 4096;
    private const VmFlags ReadWrite = VmFlags.Read | VmFlags.Write | VmFlags.MayRead | VmFlags.MayWrite | VmFlags.MayExec;

    private readonly AddressSpace _space = new(new FaultlineOptions { FaultPath = FaultPath.VmaLock, PhysicalMemoryBytes = 16 << 20 });

    private MemoryDescriptor Mm => _space.Descriptor;
    private MmapLock Lock => Mm.MmapLock;

    public void Dispose() => _space.Dispose();

    private Vma NewVma(ulong start = 0x10_0000, ulong pages = 4) =>
        Mm.CreateVma(start, start + pages * Page, start / Page, ReadWrite, AnonymousBacking.Instance);

    // As a writer attaches a new VMA: write-lock it (a detached VMA is only stamped), mark it attached, end the section.
    private Vma NewAttachedVma(ulong start = 0x10_0000, ulong pages = 4)
    {
        Vma vma = NewVma(start, pages);
        Lock.EnterWrite();
        vma.StartWrite();
        vma.MarkAttached();
        Lock.ExitWrite();
        return vma;
    }

    [Fact]
    public void RefCountIsZeroDetachedOneAttachedAndOnePlusReaders()
    {
        Vma vma = NewVma();
        Assert.Equal(0, vma.RefCount);
        Assert.True(vma.IsDetached);
        Assert.Equal(VmaReadLock.Detached, vma.TryStartRead());
        Assert.Equal(0, vma.RefCount); // increment-unless-zero: a failed attempt leaves no trace

        Lock.EnterWrite();
        vma.StartWrite();
        Assert.Equal(0, vma.RefCount); // a detached VMA is stamped without the offset: no readers to exclude
        Assert.Equal(Lock.LockSequence, vma.LockSequence);
        vma.MarkAttached();
        Assert.Equal(1, vma.RefCount);
        Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead()); // attached but write-locked in this section
        Assert.Equal(1, vma.RefCount);
        Lock.ExitWrite();

        Assert.False(vma.IsDetached);
        for (int n = 1; n <= 3; n++)
        {
            Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
            Assert.Equal(1 + n, vma.RefCount);
        }
        for (int n = 2; n >= 0; n--)
        {
            vma.EndRead();
            Assert.Equal(1 + n, vma.RefCount);
        }

        Lock.EnterWrite();
        vma.StartWrite();
        Assert.Equal(1, vma.RefCount); // the writer's offset is gone once it has stamped
        vma.MarkDetached();
        Assert.Equal(0, vma.RefCount);
        Assert.True(vma.IsDetached);
        Lock.ExitWrite();
        Assert.Equal(VmaReadLock.Detached, vma.TryStartRead());
    }

    [Fact]
    public void ReadersStopAtRefLimitAndAWriterStillHasRoom()
    {
        Vma vma = NewAttachedVma();
        vma.AdjustRefCountForTest(Vma.RefLimit - 2); // RefLimit - 2 readers
        Assert.Equal(Vma.RefLimit - 1, vma.RefCount);
        Assert.Equal(VmaReadLock.Locked, vma.TryStartRead()); // the last reader that fits
        Assert.Equal(Vma.RefLimit, vma.RefCount);
        Assert.Equal(VmaReadLock.Busy, vma.TryStartRead());
        Assert.Equal(VmaReadLock.Busy, vma.TryStartRead());
        Assert.Equal(Vma.RefLimit, vma.RefCount); // a refused reader leaves no trace

        // With RefLimit - 1 readers inside, the writer can still add VMA_LOCK_OFFSET without overflowing.
        using var threads = new ThreadScope();
        var writer = threads.Run("writer", () =>
        {
            Lock.EnterWrite();
            vma.StartWrite();
            return Lock.LockSequence;
        });
        ThreadRole.WaitUntil(() => vma.RefCount == Vma.RefLimit + Vma.LockOffset, "the writer added its offset");
        Assert.Equal(int.MaxValue, vma.RefCount);
        Assert.False(writer.IsDone);
        Assert.Equal(VmaReadLock.Busy, vma.TryStartRead()); // a writer is excluding readers

        vma.AdjustRefCountForTest(-(Vma.RefLimit - 2)); // all but one reader leave at once
        Assert.Equal(Vma.LockOffset + 2, vma.RefCount);
        Assert.False(writer.IsDone);
        vma.EndRead(); // the last reader wakes the writer
        long section = writer.Join();
        Assert.Equal(1, vma.RefCount);
        Assert.Equal(section, vma.LockSequence);
        Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead());
        Lock.ExitWrite();
        Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
        vma.EndRead();
    }

    [Fact]
    public void StartWriteReturnsAtOnceWhenAlreadyLockedInThisWriteSection()
    {
        Vma vma = NewAttachedVma();
        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(Mm.Probes);

        Lock.EnterWrite();
        long section = Lock.LockSequence;
        vma.StartWrite();
        Assert.Equal(1, probes[ProbePoint.VmaWriterWaiting]);
        Assert.Equal(section, vma.LockSequence);

        // A reader that raced in (it will fail its re-check) must not make a second vma_start_write wait for it.
        vma.AdjustRefCountForTest(+1);
        var again = threads.Run("writer", () =>
        {
            vma.StartWrite();
            return true;
        });
        Assert.True(again.Join(timeoutMs: 5_000), "vma_start_write of an already write-locked VMA waited");
        Assert.Equal(1, probes[ProbePoint.VmaWriterWaiting]); // it returned before adding the offset
        Assert.Equal(2, vma.RefCount);
        Assert.Equal(section, vma.LockSequence);
        vma.AdjustRefCountForTest(-1);
        Lock.ExitWrite();

        // The next write section must exclude readers again.
        Lock.EnterWrite();
        vma.StartWrite();
        Assert.Equal(2, probes[ProbePoint.VmaWriterWaiting]);
        Assert.Equal(Lock.LockSequence, vma.LockSequence);
        Lock.ExitWrite();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EndingTheWriteSectionReleasesEveryStampedVmaAtOnce(bool downgrade)
    {
        Vma[] stamped = [NewAttachedVma(0x10_0000), NewAttachedVma(0x20_0000), NewAttachedVma(0x30_0000)];
        Vma untouched = NewAttachedVma(0x40_0000);

        Lock.EnterWrite();
        long section = Lock.LockSequence;
        Assert.Equal(1, section & 1);
        foreach (Vma vma in stamped)
        {
            vma.StartWrite();
        }
        foreach (Vma vma in stamped)
        {
            Assert.Equal(section, vma.LockSequence);
            Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead());
        }
        // Locking is per VMA: one the writer did not stamp stays readable during the section.
        Assert.Equal(VmaReadLock.Locked, untouched.TryStartRead());
        untouched.EndRead();

        if (downgrade)
        {
            Lock.DowngradeWrite();
            Assert.True(Lock.IsLocked);
            Assert.False(Lock.IsWriteLocked);
        }
        else
        {
            Lock.ExitWrite();
        }
        // One increment of mm_lock_seq (vma_end_write_all), no per-VMA unlock: all are readable now.
        Assert.Equal(section + 1, Lock.LockSequence);
        foreach (Vma vma in stamped)
        {
            Assert.Equal(section, vma.LockSequence); // the stamps are left as they were
            Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
            Assert.Equal(2, vma.RefCount);
        }
        foreach (Vma vma in stamped)
        {
            vma.EndRead();
            Assert.Equal(1, vma.RefCount);
        }
        if (downgrade)
        {
            Lock.ExitRead();
        }
    }

    [Fact]
    public void MunmapReleasesAllItsVmaWriteLocksTogetherAtTheDowngrade()
    {
        // Three neighbours A | B | C that cannot merge; munmap of [A+2, C+2) splits A and C and removes B.
        ulong x = 0x1000_0000;
        _space.Map(x, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        _space.Map(x + 4 * Page, 4 * Page, Protection.Read, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        _space.Map(x + 8 * Page, 4 * Page, Protection.ReadWrite | Protection.Execute, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(3, _space.MapCount);
        using (Cpu cpu = _space.AttachCpu())
        {
            cpu.Store(x + 3 * Page, 1); // something to zap, so the unmap flushes after its downgrade
        }
        Vma a = Mm.Tree.LookupLockless(x)!, b = Mm.Tree.LookupLockless(x + 4 * Page)!, c = Mm.Tree.LookupLockless(x + 8 * Page)!;

        // A reader holds C, so the unmap stops inside its write section when it reaches C (after A and B).
        Assert.Equal(VmaReadLock.Locked, c.TryStartRead());
        using var threads = new ThreadScope();
        using var afterDowngrade = new ProbeGate(_space, ProbePoint.GatherBeforeGracePeriod, ThreadRole.Is("munmap"));
        var unmap = threads.Run("munmap", () => _space.TryUnmap(x + 2 * Page, 8 * Page));
        ThreadRole.WaitUntil(() => c.RefCount == Vma.LockOffset + 2, "munmap waits for the reader of C");
        long section = Lock.LockSequence;
        Assert.Equal(1, section & 1);
        Vma aHead = Mm.Tree.FindContaining(x)!; // the new VMA for A's remaining head, in the writer's version
        Assert.NotSame(a, aHead);
        foreach (Vma vma in new[] { a, b, aHead })
        {
            Assert.Equal(section, vma.LockSequence);
            Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead());
        }

        c.EndRead(); // wakes the unmap
        afterDowngrade.WaitArrived();
        // munmap still runs (it holds mmap_lock for read and is zapping), but its VMA write locks ended together.
        Assert.True(Lock.IsLocked);
        Assert.False(Lock.IsWriteLocked);
        Assert.Equal(section + 1, Lock.LockSequence);
        Vma cTail = Mm.Tree.LookupLockless(x + 10 * Page)!;
        Assert.Same(aHead, Mm.Tree.LookupLockless(x));
        Assert.Equal(section, cTail.LockSequence);
        foreach (Vma vma in new[] { aHead, cTail })
        {
            Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
            vma.EndRead();
        }
        afterDowngrade.Release();
        Assert.Equal(Errno.None, unmap.Join());

        Assert.Equal(2, _space.MapCount);
        Assert.Equal(1, aHead.RefCount);
        Assert.Equal(1, cTail.RefCount);
        Assert.Equal(0, a.RefCount);
        Assert.Equal(0, b.RefCount);
        Assert.Equal(0, c.RefCount);
    }

    [Fact]
    public void SequenceWrapAroundNeverGivesAFalseUnlocked()
    {
        Vma vma = NewAttachedVma();
        Vma other = NewAttachedVma(0x20_0000);
        // Eight write sections whose odd values run through long.MaxValue and wrap to long.MinValue + 1.
        Lock.SetLockSequenceForTest(long.MaxValue - 7);
        var sections = new List<long>();
        for (int i = 0; i < 8; i++)
        {
            Lock.EnterWrite();
            long section = Lock.LockSequence;
            sections.Add(section);
            Assert.Equal(1, section & 1);
            Assert.Equal(VmaReadLock.Locked, vma.TryStartRead()); // not yet stamped in this section
            vma.EndRead();
            vma.StartWrite();
            Assert.Equal(section, vma.LockSequence);
            Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead()); // never a false "unlocked"
            Assert.Equal(1, vma.RefCount);
            Assert.Equal(VmaReadLock.Locked, other.TryStartRead());
            other.EndRead();
            if (i % 2 == 0)
            {
                Lock.ExitWrite();
            }
            else
            {
                Lock.DowngradeWrite();
                Lock.ExitRead();
            }
            Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
            vma.EndRead();
        }
        Assert.Contains(long.MaxValue, sections);
        Assert.Contains(long.MinValue + 1, sections);

        // A VMA created after the wrap starts "never locked" (an even value), so it is not mistaken for one stamped in
        // the current (odd) section: vma_start_write does the whole protocol.
        Vma fresh = NewVma(0x30_0000);
        Lock.EnterWrite();
        Assert.NotEqual(Lock.LockSequence, fresh.LockSequence);
        fresh.StartWrite();
        Assert.Equal(Lock.LockSequence, fresh.LockSequence);
        fresh.MarkAttached();
        Assert.Equal(VmaReadLock.WriteLocked, fresh.TryStartRead());
        Lock.ExitWrite();
        Assert.Equal(VmaReadLock.Locked, fresh.TryStartRead());
        fresh.EndRead();
    }

    [Fact]
    public void SequenceWrapAroundMayGiveAFalseLocked()
    {
        Vma vma = NewAttachedVma();
        Lock.EnterWrite();
        long stamped = Lock.LockSequence;
        vma.StartWrite();
        Lock.ExitWrite();
        Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
        vma.EndRead();

        // 2^63 write sections later (the kernel: 2^31; Faultline keeps 64-bit sequences, see the SPIN model's
        // BROKEN_SEQ_WRAP) mm_lock_seq comes back to the stale stamp: a section that never touched this VMA
        // makes readers fail on it. A false "locked" is allowed (the reader falls back to the mmap lock).
        Lock.SetLockSequenceForTest(stamped - 1);
        Lock.EnterWrite();
        Assert.Equal(stamped, Lock.LockSequence);
        Assert.Equal(VmaReadLock.WriteLocked, vma.TryStartRead());
        Assert.Equal(1, vma.RefCount);
        Lock.ExitWrite();
        Assert.Equal(VmaReadLock.Locked, vma.TryStartRead());
        vma.EndRead();

        // A new, detached VMA's "never locked" value equals mm_lock_seq for the one unlocked period right after the
        // wrap: its reader sees "locked" (ABORT) instead of "detached" (MISS). Also allowed.
        Vma fresh = NewVma(0x30_0000);
        Lock.SetLockSequenceForTest(long.MinValue);
        Assert.Equal(VmaReadLock.WriteLocked, fresh.TryStartRead());
        Lock.SetLockSequenceForTest(long.MinValue + 2);
        Assert.Equal(VmaReadLock.Detached, fresh.TryStartRead());
        Assert.Equal(0, fresh.RefCount);
    }

    [Fact]
    public void DetachWaitsOutASpuriousReaderAndEndsAtZero()
    {
        // Peter Zijlstra's race at the level of the lock: a reader increments after vma_start_write and before the
        // detaching decrement; the decrement then goes 2 -> 1, not 1 -> 0.
        Vma vma = NewAttachedVma();
        using var threads = new ThreadScope();
        using var probes = new ProbeCounter(Mm.Probes);
        using var beforeDetach = new ProbeGate(_space, ProbePoint.VmaBeforeDetach, ThreadRole.Is("writer"));
        using var gate = new ProbeGate(_space, ProbePoint.VmaReadBeforeIncrement, ThreadRole.Is("reader"));
        using var incremented = new ProbeGate(_space, ProbePoint.VmaReadIncremented, ThreadRole.Is("reader"));

        var reader = threads.Run("reader", vma.TryStartRead);
        gate.WaitArrived(); // passed the cheap check: the VMA is not write-locked yet
        var writer = threads.Run("writer", () =>
        {
            Lock.EnterWrite();
            vma.StartWrite();
            vma.MarkDetached();
            Lock.ExitWrite();
            return true;
        });
        beforeDetach.WaitArrived();
        Assert.Equal(1, vma.RefCount);
        gate.Release();
        incremented.WaitArrived();
        Assert.Equal(2, vma.RefCount);

        long sleeps = Mm.WriterWait.Sleeps;
        beforeDetach.Release();
        ThreadRole.WaitUntil(() => Mm.WriterWait.Sleeps > sleeps, "the detaching writer sleeps");
        Assert.Equal(1, probes[ProbePoint.VmaDetachWaiting]);
        Assert.Equal(Vma.LockOffset + 1, vma.RefCount); // 2 -> 1, then the offset excludes further readers
        Assert.False(writer.IsDone);

        incremented.Release(); // the re-check sees the stamp, drops the reference, wakes the writer
        Assert.Equal(VmaReadLock.WriteLocked, reader.Join());
        Assert.True(writer.Join());
        Assert.Equal(0, vma.RefCount);
        Assert.Equal(VmaReadLock.Detached, vma.TryStartRead());
    }
}
