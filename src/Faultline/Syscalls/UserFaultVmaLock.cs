using Faultline.Areas;
using Faultline.Concurrency;
using Faultline.Mm;

namespace Faultline.Syscalls;

/// <summary>
/// How a user-fault resolution holds the VMA it fills (<c>mm/userfaultfd.c</c> since 6.6: <c>uffd_lock_vma</c>,
/// <c>uffd_mfill_lock</c>, <c>uffd_mfill_unlock</c>): the VMA's read lock, taken without the mmap lock by
/// <c>lock_vma_under_rcu</c>, or, when that fails or a private VMA still lacks its anon_vma, under the mmap read lock
/// (<c>find_vma_and_prepare_anon</c>, then <c>vma_start_read_locked</c>) which is dropped again. So a resolution holds
/// no mmap lock while it fills: maps, unmaps and faults of other VMAs go on, and a writer of this VMA waits for it in
/// <c>vma_start_write</c>.
/// </summary>
/// <remarks>
/// <para>
/// The lockless lookup needs a registered walk reader, and work under a VMA lock alone needs a use claim, since
/// disposal of the address space waits for claims, not for VMA readers. The channel has one such context; a resolution
/// that finds it in use by another thread holds the mmap read lock throughout instead (the pre-6.6 way), which is
/// always correct.
/// </para>
/// <para>Thread safety: any thread; <see cref="Dispose"/> once, when no resolution is running.</para>
/// </remarks>
internal sealed class UserFaultVmaLock : IDisposable
{
    private readonly MemoryDescriptor _mm;
    private readonly object _owner;
    private readonly RcuReader _reader;
    private readonly UseClaim _claim = new();
    private readonly bool _attached;
    // 1 while a resolution uses the reader and the claim; taken and given back with Interlocked (full fences).
    private int _busy;

    /// <summary>
    /// A context over <paramref name="mm"/>; <paramref name="owner"/> names it in exceptions. Over an address space
    /// already being torn down nothing is registered and every <see cref="Lock"/> takes the mmap-lock way (which then
    /// throws <see cref="ObjectDisposedException"/>).
    /// </summary>
    public UserFaultVmaLock(MemoryDescriptor mm, object owner)
    {
        _mm = mm;
        _owner = owner;
        _reader = new RcuReader(mm.Rcu.Generation);
        _attached = mm.TryAttachContext(_reader, _claim);
        _busy = _attached ? 0 : 1;
    }

    /// <summary>
    /// <c>uffd_lock_vma</c>: the VMA containing <paramref name="address"/>, held as <paramref name="held"/> says; a
    /// private VMA has its anon_vma. <see cref="Errno.ENOENT"/> when no VMA contains it, <see cref="Errno.EAGAIN"/> when
    /// its read lock cannot be taken even under the mmap lock (<c>vma_start_read_locked</c> at the reader limit).
    /// Every success is followed by <see cref="Unlock"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The address space is being torn down.</exception>
    public Errno Lock(ulong address, out UserFaultHeldVma held)
    {
        held = default;
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            return LockUnderMmapLock(address, out held);
        }
        bool claimed = _claim.TryEnter(Environment.CurrentManagedThreadId);
        Debug.Assert(claimed, "the claim is used only by the holder of _busy");
        // Read after the claim store (UseClaim's pairing with MemoryDescriptor.Dispose).
        if (_mm.IsExiting)
        {
            Release();
            ObjectDisposedException.ThrowIf(true, _owner);
        }
        Vma? vma = LockVmaUnderRcu(address, requireAnonVma: true);
        if (vma is not null)
        {
            held = new UserFaultHeldVma(vma, mmapLocked: false);
            return Errno.None;
        }
        // The fallback: find and prepare under the mmap read lock, take the VMA lock there, drop the mmap lock. The
        // claim stays held, so Dispose (which waits for claims before it takes the mmap lock) cannot wait on us here.
        _mm.MmapLock.EnterRead();
        try
        {
            vma = _mm.Tree.FindContaining(address);
            if (vma is null)
            {
                Release();
                return Errno.ENOENT;
            }
            PrepareAnon(vma);
            if (vma.TryStartRead() != VmaReadLock.Locked)
            {
                Release();
                return Errno.EAGAIN;
            }
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
        held = new UserFaultHeldVma(vma, mmapLocked: false);
        return Errno.None;
    }

    /// <summary>
    /// <c>uffd_move_lock</c>: the VMAs containing <paramref name="destination"/> (with its anon_vma) and
    /// <paramref name="source"/> (the same VMA when it contains both), each read-locked, or both held by the mmap read
    /// lock. <see cref="Errno.ENOENT"/> when either has no VMA, <see cref="Errno.EAGAIN"/> as for <see cref="Lock"/>.
    /// Every success is followed by <see cref="UnlockPair"/>.
    /// </summary>
    /// <exception cref="ObjectDisposedException">The address space is being torn down.</exception>
    public Errno LockPair(ulong destination, ulong source, out UserFaultHeldVma dst, out UserFaultHeldVma src)
    {
        dst = src = default;
        if (Interlocked.CompareExchange(ref _busy, 1, 0) != 0)
        {
            Errno error = LockUnderMmapLock(destination, out dst);
            if (error != Errno.None)
            {
                return error;
            }
            if (_mm.Tree.FindContaining(source) is not { } found)
            {
                _mm.MmapLock.ExitRead();
                dst = default;
                return Errno.ENOENT;
            }
            src = new UserFaultHeldVma(found, mmapLocked: true);
            return Errno.None;
        }
        bool claimed = _claim.TryEnter(Environment.CurrentManagedThreadId);
        Debug.Assert(claimed, "the claim is used only by the holder of _busy");
        // Read after the claim store (UseClaim's pairing with MemoryDescriptor.Dispose).
        if (_mm.IsExiting)
        {
            Release();
            ObjectDisposedException.ThrowIf(true, _owner);
        }
        if (LockVmaUnderRcu(destination, requireAnonVma: true) is { } dstVma)
        {
            if (dstVma.Contains(source))
            {
                dst = src = new UserFaultHeldVma(dstVma, mmapLocked: false);
                return Errno.None;
            }
            if (LockVmaUnderRcu(source, requireAnonVma: false) is { } srcVma)
            {
                dst = new UserFaultHeldVma(dstVma, mmapLocked: false);
                src = new UserFaultHeldVma(srcVma, mmapLocked: false);
                return Errno.None;
            }
            dstVma.EndRead();
        }
        // find_vmas_mm_locked, then vma_start_read_locked on both, under the mmap read lock only for the while.
        _mm.MmapLock.EnterRead();
        try
        {
            Vma? d = _mm.Tree.FindContaining(destination);
            Vma? s = _mm.Tree.FindContaining(source);
            if (d is null || s is null)
            {
                Release();
                return Errno.ENOENT;
            }
            PrepareAnon(d);
            if (d.TryStartRead() != VmaReadLock.Locked)
            {
                Release();
                return Errno.EAGAIN;
            }
            if (!ReferenceEquals(s, d) && s.TryStartRead() != VmaReadLock.Locked)
            {
                d.EndRead();
                Release();
                return Errno.EAGAIN;
            }
            dst = new UserFaultHeldVma(d, mmapLocked: false);
            src = new UserFaultHeldVma(s, mmapLocked: false);
            return Errno.None;
        }
        finally
        {
            _mm.MmapLock.ExitRead();
        }
    }

    /// <summary><c>uffd_move_unlock</c>: drops what <see cref="LockPair"/> took.</summary>
    public void UnlockPair(in UserFaultHeldVma dst, in UserFaultHeldVma src)
    {
        if (dst.MmapLocked)
        {
            _mm.MmapLock.ExitRead();
            return;
        }
        if (!ReferenceEquals(src.Vma, dst.Vma))
        {
            src.Vma.EndRead();
        }
        dst.Vma.EndRead();
        Release();
    }

    /// <summary><c>uffd_mfill_unlock</c>: drops what <see cref="Lock"/> took.</summary>
    public void Unlock(in UserFaultHeldVma held)
    {
        if (held.MmapLocked)
        {
            _mm.MmapLock.ExitRead();
            return;
        }
        held.Vma.EndRead();
        Release();
    }

    /// <summary>Unregisters the reader and the claim (the channel is closing; no resolution runs).</summary>
    public void Dispose()
    {
        if (_attached)
        {
            _mm.DetachContext(_reader, _claim);
        }
    }

    // The pre-6.6 way, for a resolution that finds the context in use: the mmap read lock held until Unlock.
    private Errno LockUnderMmapLock(ulong address, out UserFaultHeldVma held)
    {
        held = default;
        _mm.EnterReadUnlessExiting(_owner);
        Vma? vma = _mm.Tree.FindContaining(address);
        if (vma is null)
        {
            _mm.MmapLock.ExitRead();
            return Errno.ENOENT;
        }
        PrepareAnon(vma);
        held = new UserFaultHeldVma(vma, mmapLocked: true);
        return Errno.None;
    }

    // lock_vma_under_rcu as uffd_lock_vma uses it: a VMA write-locked, busy or shrunk meanwhile is left to the mmap-lock
    // fallback, a detached one is looked up again, and (when the caller needs it) a private VMA without anon_vma, which
    // only the mmap lock may assign, is given up too.
    private Vma? LockVmaUnderRcu(ulong address, bool requireAnonVma)
    {
        while (true)
        {
            Vma? vma;
            VmaReadLock locked;
            _reader.EnterWalk(_mm.Rcu.WalkEpoch);
            try
            {
                vma = _mm.Tree.LookupLockless(address);
                if (vma is null)
                {
                    return null;
                }
                _mm.Probes.Hit(ProbePoint.UserFaultLockAfterLookup);
                locked = vma.TryStartRead();
            }
            finally
            {
                _reader.ExitWalk();
            }
            if (locked == VmaReadLock.Detached)
            {
                continue;
            }
            if (locked != VmaReadLock.Locked)
            {
                return null;
            }
            if (!vma.Contains(address) || (requireAnonVma && NeedsAnonVma(vma)))
            {
                vma.EndRead();
                return null;
            }
            return vma;
        }
    }

    // find_vma_and_prepare_anon's anon_vma_prepare (caller holds the mmap read lock).
    private void PrepareAnon(Vma vma)
    {
        if (NeedsAnonVma(vma))
        {
            AnonVmaPreparation.Prepare(_mm, vma);
        }
    }

    private static bool NeedsAnonVma(Vma vma) => vma.Backing.IsAnonymous && (vma.Flags & VmFlags.Shared) == 0 && vma.AnonVma is null;

    private void Release()
    {
        _claim.Exit();
        Interlocked.Exchange(ref _busy, 0);
    }
}
