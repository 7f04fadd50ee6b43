using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// mlock, mlock2, munlock, mlockall and munlockall without <c>CAP_IPC_LOCK</c> (the host comparison runs with it):
/// the lock limit's errors as Linux chooses them, <c>mm->locked_vm</c>, populate and MLOCK_ONFAULT.
/// </summary>
public class MlockTests
{
    private const ulong Page = PageGeometry.PageSize;
    private const ulong Base = 0x4000_0000;

    private static AddressSpace NewSpace(ulong limit, bool cap = false) =>
        new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20, MemoryLockLimit = limit, CapIpcLock = cap, MapZeroPageOnRead = true });

    [Fact]
    public void LockingPastTheLimitIsEnomemAndAlreadyLockedPagesAreNotCountedTwice()
    {
        using var space = NewSpace(limit: 8 * Page);
        ulong a = space.Map(Base, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.ENOMEM, space.Lock(a, 9 * Page));
        Assert.Equal(0, space.LockedPages);
        Assert.Equal(Errno.None, space.Lock(a, 6 * Page));
        Assert.Equal(6, space.LockedPages);
        Assert.Equal(6, space.ResidentPages);
        // 8 pages asked, 6 of them locked already: 8 in all, within the limit.
        Assert.Equal(Errno.None, space.Lock(a, 8 * Page));
        Assert.Equal(8, space.LockedPages);
        Assert.Equal(Errno.ENOMEM, space.Lock(a + 8 * Page, Page));
        Assert.Equal(Errno.None, space.Unlock(a + 2 * Page, 2 * Page));
        Assert.Equal(6, space.LockedPages);
        // Locked [0, 2), unlocked [2, 4), locked [4, 8), never locked [8, 16).
        Assert.Equal(4, space.MapCount);
        space.Unmap(a, 16 * Page);
        Assert.Equal(0, space.LockedPages);
    }

    [Fact]
    public void AZeroLimitWithoutTheCapabilityIsEpermAndTheCapabilityLiftsTheLimit()
    {
        using var space = NewSpace(limit: 0);
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.EPERM, space.Lock(a, Page));
        Assert.Equal(Errno.EPERM, space.LockAll(LockAllFlags.Current));
        Assert.Equal(Errno.EPERM, space.TryMap(Base + 8 * Page, Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Locked, out _));
        Assert.Equal(Errno.None, space.Unlock(a, Page));

        using var privileged = NewSpace(limit: 0, cap: true);
        ulong b = privileged.Map(Base, 64 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.None, privileged.Lock(b, 64 * Page));
        Assert.Equal(64, privileged.LockedPages);
    }

    [Fact]
    public void MapLockedPastTheLimitIsEagain()
    {
        using var space = NewSpace(limit: 4 * Page);
        Assert.Equal(Errno.EAGAIN, space.TryMap(Base, 5 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Locked, out _));
        Assert.Equal(0, space.MapCount);
        Assert.Equal(Errno.None, space.TryMap(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Locked, out _));
        Assert.Equal(4, space.LockedPages);
        Assert.Equal(4, space.ResidentPages);
    }

    [Fact]
    public void OnFaultLocksWithoutPopulatingAndMlockOfProtNoneSetsTheFlagThenFailsWithEnomem()
    {
        using var space = NewSpace(limit: 64 * Page);
        ulong a = space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.None, space.Lock(a, 4 * Page, MemoryLockFlags.OnFault));
        Assert.Equal(0, space.ResidentPages);
        Assert.Contains(" lo lf ", space.GetSmaps());
        Assert.Equal(Errno.EINVAL, space.Lock(a, Page, (MemoryLockFlags)2));

        ulong none = space.Map(Base + 8 * Page, 2 * Page, Protection.None, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.ENOMEM, space.Lock(none, 2 * Page));
        Assert.Equal(6, space.LockedPages);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MprotectMakingALockedPieceWritableJoinsItsLeftNeighbourFirst(bool onFault)
    {
        using var space = NewSpace(limit: 64 * Page);
        ulong a = space.Map(Base, 8 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        space.Protect(a + 3 * Page, Page, onFault ? Protection.Read : Protection.None);
        using (Cpu cpu = space.AttachCpu())
        {
            // Written after the split, each side gets an anon_vma of its own: [0, 3) and [4, 8) can no longer merge.
            cpu.Store(a, 1L);
            cpu.Store(a + 5 * Page, 2L);
        }
        // mlock2 stops populating at the PROT_NONE piece (ENOMEM) with every flag set; MLOCK_ONFAULT populates nothing.
        Assert.Equal(onFault ? Errno.None : Errno.ENOMEM, space.Lock(a, 8 * Page, onFault ? MemoryLockFlags.OnFault : MemoryLockFlags.None));

        // vma_modify_flags joins [3, 4) to [0, 3) (a three-way join needs one anon_vma); mprotect_fixup then write-faults
        // it into that anon_vma, or with VM_LOCKONFAULT faults nothing. Picking [4, 8)'s anon_vma first would join
        // the piece to the right instead.
        space.Protect(a + Page, 3 * Page, Protection.ReadWrite);
        Assert.Equal([(a, a + 4 * Page), (a + 4 * Page, a + 8 * Page)], space.GetMappings().Select(m => (m.Start, m.End)));
        Assert.Equal(onFault ? 1 : 4, space.CountResidentPages(a, a + 4 * Page));
        Assert.Equal(1, space.CountResidentPages(a + 4 * Page, a + 8 * Page));
    }

    [Fact]
    public void MlockallLocksEverythingAndTheFutureAndMunlockallUndoesBoth()
    {
        using var space = NewSpace(limit: 16 * Page);
        space.Map(Base, 4 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(Errno.EINVAL, space.LockAll(LockAllFlags.None));
        Assert.Equal(Errno.EINVAL, space.LockAll(LockAllFlags.OnFault));
        Assert.Equal(Errno.EINVAL, space.LockAll((LockAllFlags)8));

        Assert.Equal(Errno.None, space.LockAll(LockAllFlags.Current | LockAllFlags.Future));
        Assert.Equal(4, space.LockedPages);
        Assert.Equal(4, space.ResidentPages);
        space.Map(Base + 8 * Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(6, space.LockedPages);
        Assert.Equal(6, space.ResidentPages);

        Assert.Equal(Errno.None, space.UnlockAll());
        Assert.Equal(0, space.LockedPages);
        space.Map(Base + 12 * Page, 2 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        Assert.Equal(0, space.LockedPages);
        Assert.DoesNotContain(" lo ", space.GetSmaps());

        space.Map(Base + 16 * Page, 16 * Page, Protection.ReadWrite, MapFlags.PrivateAnonymous | MapFlags.Fixed);
        // 24 pages mapped in all, over the limit of 16: MCL_CURRENT is refused.
        Assert.Equal(Errno.ENOMEM, space.LockAll(LockAllFlags.Current));
        Assert.Equal(Errno.None, space.LockAll(LockAllFlags.Future));
        Assert.Equal(0, space.LockedPages);
    }
}
