using Faultline.Areas;
using Faultline.Syscalls;

namespace Faultline;

/// <summary>
/// A user-fault channel over an <see cref="AddressSpace"/> (Linux's userfaultfd): ranges registered with it hand
/// their faults to the host instead of being filled by the kernel's rules. A faulting <see cref="Cpu"/> blocks, holding
/// no mmap or VMA lock, until the host resolves the fault with <see cref="Copy(ulong, ReadOnlySpan{byte}, UserFaultResolveFlags, out ulong)"/>,
/// <see cref="ZeroPage"/>, <see cref="Continue"/>, <see cref="WriteProtect"/> or <see cref="Wake"/>; the fault is then
/// retried. The host learns of faults and of non-cooperative events by reading the channel (<see cref="Read"/>,
/// <see cref="ReadAsync"/>, <see cref="TryRead"/>), or through a <see cref="UserFaultCallback"/> that calls a handler
/// on a thread of its own.
/// </summary>
/// <remarks>
/// <para>
/// Thread safety: every member may be called from any thread, concurrently. <see cref="Register"/> and
/// <see cref="Unregister"/> take the address space's mmap lock for write and <see cref="WriteProtect"/> for read; the
/// copy, zero-page, continue and move resolutions hold only their VMAs' read locks as Linux 6.6+ does (the mmap read
/// lock briefly when a VMA's lock cannot be taken without it, or throughout while another thread's resolution uses the
/// channel's lock-free lookup). None may be called from a thread that is itself blocked in a fault of this address
/// space (a handler runs on another thread).
/// </para>
/// <para>
/// Disposal (<c>close</c> of the userfaultfd): the channel is released, every range registered with it becomes an
/// ordinary range, and every fault blocked on it wakes and is retried — and then handled as Linux handles an
/// unregistered fault (a zero-filled page for a missing anonymous page). Readers blocked in <see cref="Read"/> or
/// <see cref="ReadAsync"/> get <see cref="ObjectDisposedException"/>. Disposing the address space wakes blocked faults
/// too (their accesses then throw <see cref="ObjectDisposedException"/>); every later call on the channel except
/// <see cref="Dispose"/> throws <see cref="ObjectDisposedException"/>.
/// </para>
/// <para>
/// A fault that gets no answer blocks for ever, as on Linux, unless the channel was created with a fault timeout
/// (Faultline's own: the access then gets SIGBUS, <see cref="AccessOutcome.BusError"/>) or with
/// <see cref="UserFaultFeatures.SigBus"/> (no fault is delivered; every one is SIGBUS at once).
/// </para>
/// </remarks>
/// <example>
/// <code>
/// using var channel = new UserFaultChannel(space);
/// channel.Register(region, 16 * 4096, UserFaultModes.Missing);
/// using var handler = new UserFaultCallback(channel, e =&gt; channel.Copy(e.Address, pageBytes));
/// long value = cpu.Load&lt;long&gt;(region);   // blocks until the handler copied the page in
/// </code>
/// </example>
public sealed class UserFaultChannel : IDisposable
{
    private const UserFaultFeatures Supported = UserFaultFeatures.EventFork | UserFaultFeatures.EventRemap | UserFaultFeatures.EventRemove
        | UserFaultFeatures.MissingShmem | UserFaultFeatures.EventUnmap | UserFaultFeatures.SigBus | UserFaultFeatures.ThreadId
        | UserFaultFeatures.MinorShmem | UserFaultFeatures.Move;

    private readonly UserFaultContext _context;
    private readonly UserFaultRegistration _registration;
    private readonly UserFaultFill _fill;
    private readonly UserFaultVmaLock _vmaLock;
    private readonly UserFaultMove _move;
    private int _disposed;

    /// <summary>
    /// Opens a channel over <paramref name="space"/> (<c>userfaultfd()</c> then <c>UFFDIO_API</c>).
    /// <paramref name="faultTimeout"/>: how long a fault waits for an answer before its access gets SIGBUS (null: for
    /// ever, as on Linux).
    /// </summary>
    /// <exception cref="MemoryOperationException"><see cref="Errno.EINVAL"/> for a feature Faultline does not offer.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="faultTimeout"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException"><paramref name="space"/> is disposed.</exception>
    public UserFaultChannel(AddressSpace space, UserFaultFeatures features = UserFaultFeatures.None, TimeSpan? faultTimeout = null)
    {
        ArgumentNullException.ThrowIfNull(space);
        if ((features & ~Supported) != 0)
        {
            throw new MemoryOperationException("userfaultfd", Errno.EINVAL);
        }
        if (faultTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(faultTimeout), "the fault timeout must not be negative");
        }
        ObjectDisposedException.ThrowIf(space.Descriptor.IsExiting, space);
        AddressSpace = space;
        _context = new UserFaultContext(features, space, faultTimeout ?? Timeout.InfiniteTimeSpan);
        _context.Channel = this;
        _registration = new UserFaultRegistration(space.Descriptor, space.Editor, space);
        _vmaLock = new UserFaultVmaLock(space.Descriptor, space);
        _fill = new UserFaultFill(space.Descriptor, space, _vmaLock);
        _move = new UserFaultMove(space.Descriptor, _vmaLock);
        space.Descriptor.UserFaults.Add(_context);
    }

    // The child's channel of a fork event.
    private UserFaultChannel(AddressSpace space, UserFaultContext context)
    {
        AddressSpace = space;
        _context = context;
        _context.Channel = this;
        _registration = new UserFaultRegistration(space.Descriptor, space.Editor, space);
        _vmaLock = new UserFaultVmaLock(space.Descriptor, space);
        _fill = new UserFaultFill(space.Descriptor, space, _vmaLock);
        _move = new UserFaultMove(space.Descriptor, _vmaLock);
    }

    /// <summary>The address space whose ranges register here.</summary>
    public AddressSpace AddressSpace { get; }

    /// <summary>The features asked for at creation.</summary>
    public UserFaultFeatures Features => _context.Features;

    /// <summary>How long a fault waits before SIGBUS; <see cref="Timeout.InfiniteTimeSpan"/> for ever.</summary>
    public TimeSpan FaultTimeout => _context.FaultTimeout;

    /// <summary>Faults blocked on this channel now, read or not.</summary>
    public int WaitingFaults => _context.WaitingFaults;

    /// <summary>
    /// <c>UFFDIO_REGISTER</c>: hands faults of [<paramref name="address"/>, + <paramref name="length"/>) of the kinds
    /// in <paramref name="modes"/> to this channel (replacing the modes of VMAs already registered here). Every VMA
    /// meeting the range must be anonymous (any mode) or shared anonymous memory (missing, minor); holes are allowed.
    /// </summary>
    /// <returns>
    /// <see cref="Errno.EINVAL"/> for no or an unknown mode, an unaligned or empty range, or a VMA that cannot take the
    /// modes; <see cref="Errno.ENOMEM"/> when no VMA meets the range (or the splits exceed the map count);
    /// <see cref="Errno.EPERM"/> for a VMA never writable (no <c>VM_MAYWRITE</c>); <see cref="Errno.EBUSY"/> for a VMA
    /// registered with another channel. Nothing changes on an error.
    /// </returns>
    public Errno Register(ulong address, ulong length, UserFaultModes modes) => _registration.Register(Live, address, length, modes);

    /// <summary>
    /// <c>UFFDIO_UNREGISTER</c>: [<paramref name="address"/>, + <paramref name="length"/>) becomes ordinary again; faults
    /// blocked there wake and are retried as unregistered faults, and pages write-protected by this channel are
    /// released. <see cref="Errno.EINVAL"/> for a bad range or a VMA of another channel, <see cref="Errno.ENOMEM"/>
    /// when no VMA meets the range.
    /// </summary>
    public Errno Unregister(ulong address, ulong length) => _registration.Unregister(Live, address, length);

    /// <summary>
    /// <c>UFFDIO_COPY</c>: fills fresh pages at <paramref name="address"/> with <paramref name="source"/> (whole pages)
    /// and maps them, then wakes the faults waiting on them (unless <see cref="UserFaultResolveFlags.DontWake"/>;
    /// <see cref="UserFaultResolveFlags.WriteProtect"/> maps them write-protected). The range must lie in one VMA
    /// registered with a channel.
    /// </summary>
    /// <param name="address">The first page.</param>
    /// <param name="source">The bytes; a whole number of pages.</param>
    /// <param name="flags">Wake and write-protect modes.</param>
    /// <param name="copied">Bytes mapped before any error (<c>uffdio_copy.copy</c>).</param>
    /// <returns>
    /// <see cref="Errno.EEXIST"/> when the first page is mapped already; <see cref="Errno.ENOENT"/> when the range is not
    /// inside one registered VMA (unmapped meanwhile, say); <see cref="Errno.EAGAIN"/> after a partial copy, or while a
    /// non-cooperative event is unread; <see cref="Errno.EINVAL"/> for a bad range or mode; <see cref="Errno.ENOMEM"/>.
    /// </returns>
    public Errno Copy(ulong address, ReadOnlySpan<byte> source, UserFaultResolveFlags flags, out ulong copied)
    {
        copied = 0;
        if (source.Length == 0 || source.Length % PageGeometry.PageSize != 0)
        {
            return Errno.EINVAL;
        }
        return _fill.Fill(Live, UserFaultFillKind.Copy, address, (ulong)source.Length, source, flags, out copied);
    }

    /// <summary><see cref="Copy(ulong, ReadOnlySpan{byte}, UserFaultResolveFlags, out ulong)"/> without the byte count.</summary>
    public Errno Copy(ulong address, ReadOnlySpan<byte> source, UserFaultResolveFlags flags = UserFaultResolveFlags.None) =>
        Copy(address, source, flags, out _);

    /// <summary>
    /// <c>UFFDIO_ZEROPAGE</c>: maps zero-filled pages over [<paramref name="address"/>, + <paramref name="length"/>) (the
    /// shared zero page where the address space maps it on reads, <see cref="FaultlineOptions.MapZeroPageOnRead"/>),
    /// then wakes. Errors as <see cref="Copy(ulong, ReadOnlySpan{byte}, UserFaultResolveFlags, out ulong)"/>; only
    /// <see cref="UserFaultResolveFlags.DontWake"/> is a valid flag.
    /// </summary>
    public Errno ZeroPage(ulong address, ulong length, UserFaultResolveFlags flags, out ulong zeroed) =>
        _fill.Fill(Live, UserFaultFillKind.ZeroPage, address, length, default, flags, out zeroed);

    /// <summary>
    /// <c>UFFDIO_CONTINUE</c>: maps the shared-memory pages already cached for [<paramref name="address"/>, +
    /// <paramref name="length"/>) (resolving minor faults), then wakes. <see cref="Errno.EFAULT"/> when a page is not
    /// cached, <see cref="Errno.EINVAL"/> outside shared memory; otherwise as
    /// <see cref="Copy(ulong, ReadOnlySpan{byte}, UserFaultResolveFlags, out ulong)"/>.
    /// </summary>
    public Errno Continue(ulong address, ulong length, UserFaultResolveFlags flags, out ulong mapped) =>
        _fill.Fill(Live, UserFaultFillKind.Continue, address, length, default, flags, out mapped);

    /// <summary>
    /// <c>UFFDIO_WRITEPROTECT</c>: write-protects (<paramref name="protect"/>) the mapped pages of the range for this
    /// channel — a write then blocks as a <see cref="UserFaultModes.WriteProtect"/> fault; every Cpu's writable
    /// translation is gone when this returns — or lifts the protection and wakes the faults waiting there (unless
    /// <see cref="UserFaultResolveFlags.DontWake"/>). Every VMA in the range must be registered for write-protect
    /// (<see cref="Errno.ENOENT"/> otherwise); <see cref="Errno.EINVAL"/> for a bad range or for DontWake with
    /// <paramref name="protect"/>; <see cref="Errno.EAGAIN"/> while a non-cooperative event is unread.
    /// </summary>
    public Errno WriteProtect(ulong address, ulong length, bool protect, UserFaultResolveFlags flags = UserFaultResolveFlags.None) =>
        _fill.WriteProtect(Live, address, length, protect, flags);

    /// <summary>
    /// <c>UFFDIO_MOVE</c> (Linux 6.8): moves the pages of [<paramref name="source"/>, + <paramref name="length"/>) to
    /// <paramref name="destination"/>, which must lie in one VMA registered with this channel, by moving the page-table
    /// entries (no copy), then wakes the faults waiting on them (unless <see cref="UserFaultMoveFlags.DontWake"/>). The
    /// source becomes unmapped page by page. Both ranges must be private anonymous memory of this address space with the
    /// same access and lock flags, writable; they may overlap (each page moves in turn, as on Linux).
    /// </summary>
    /// <param name="destination">The first destination page.</param>
    /// <param name="source">The first source page.</param>
    /// <param name="length">Bytes, a whole number of pages.</param>
    /// <param name="flags">Wake and hole modes.</param>
    /// <param name="moved">Bytes moved (holes skipped with <see cref="UserFaultMoveFlags.AllowSourceHoles"/> count) before any error (<c>uffdio_move.move</c>).</param>
    /// <returns>
    /// <see cref="Errno.EEXIST"/> when the first destination page is mapped; <see cref="Errno.ENOENT"/> when the first
    /// source page is a hole (without <see cref="UserFaultMoveFlags.AllowSourceHoles"/>) or a range has no VMA;
    /// <see cref="Errno.EBUSY"/> when the first source page is shared copy-on-write with a forked relative or pinned;
    /// <see cref="Errno.EINVAL"/> for a bad range or mode, ranges not each inside one VMA, shared or non-anonymous VMAs,
    /// differing access or lock flags, a read-only source, or a destination not registered here;
    /// <see cref="Errno.EAGAIN"/> after a partial move, or while a non-cooperative event is unread;
    /// <see cref="Errno.ENOMEM"/>.
    /// </returns>
    public Errno Move(ulong destination, ulong source, ulong length, UserFaultMoveFlags flags, out ulong moved) =>
        _move.Move(Live, destination, source, length, flags, out moved);

    /// <summary><see cref="Move(ulong, ulong, ulong, UserFaultMoveFlags, out ulong)"/> without the byte count.</summary>
    public Errno Move(ulong destination, ulong source, ulong length, UserFaultMoveFlags flags = UserFaultMoveFlags.None) =>
        Move(destination, source, length, flags, out _);

    /// <summary>
    /// <c>UFFDIO_WAKE</c>: wakes the faults waiting in [<paramref name="address"/>, + <paramref name="length"/>) (each
    /// retries: one whose page is still missing blocks again). <see cref="Errno.EINVAL"/> for a bad range.
    /// </summary>
    public Errno Wake(ulong address, ulong length)
    {
        UserFaultContext context = Live;
        Errno invalid = UserFaultRegistration.ValidateRange(AddressSpace.Descriptor, address, length);
        if (invalid == Errno.None)
        {
            context.Wake(address, length);
        }
        return invalid;
    }

    /// <summary>
    /// Reads the next message, blocking until one comes (the oldest fault not yet read first, then events).
    /// </summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellation"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel is (or gets) disposed.</exception>
    public UserFaultEvent Read(CancellationToken cancellation = default)
    {
        if (!Live.Read(cancellation, out UserFaultMessage message))
        {
            ObjectDisposedException.ThrowIf(true, this);
        }
        return ToEvent(message);
    }

    /// <summary>Reads the next message if one is there, without blocking (<c>O_NONBLOCK</c>).</summary>
    /// <exception cref="ObjectDisposedException">The channel is disposed.</exception>
    public bool TryRead(out UserFaultEvent userFaultEvent)
    {
        if (Live.TryRead(out UserFaultMessage message))
        {
            userFaultEvent = ToEvent(message);
            return true;
        }
        userFaultEvent = default;
        return false;
    }

    /// <summary>Reads the next message asynchronously (as <see cref="Read"/>, for <c>poll</c>-style hosts).</summary>
    /// <exception cref="OperationCanceledException"><paramref name="cancellation"/> was cancelled.</exception>
    /// <exception cref="ObjectDisposedException">The channel is (or gets) disposed.</exception>
    public async ValueTask<UserFaultEvent> ReadAsync(CancellationToken cancellation = default)
    {
        UserFaultMessage? message = await Live.ReadAsync(cancellation).ConfigureAwait(false);
        ObjectDisposedException.ThrowIf(message is null, this);
        return ToEvent(message.Value);
    }

    /// <summary>
    /// Closes the channel (<c>userfaultfd_release</c>): its ranges become ordinary, blocked faults wake and are handled
    /// as unregistered ones, blocked readers get <see cref="ObjectDisposedException"/>; the channel of a fork event not
    /// yet read closes too. A second call does nothing.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        // A fork event nobody read: the child's channel closes with this one (userfaultfd_event_wait_completion
        // releases the new context of a fork whose manager went away), so the child's faults are not left waiting.
        while (_context.TryRead(out UserFaultMessage unread))
        {
            if (unread.Child is not null)
            {
                ToEvent(unread).Child!.Dispose();
            }
        }
        _registration.Release(_context);
        Faultline.Mm.MemoryDescriptor mm = AddressSpace.Descriptor;
        mm.MmapLock.EnterRead();
        try
        {
            // The cached frames go back while the arena is alive (its teardown takes the write lock).
            if (!mm.IsExiting)
            {
                _fill.Drain();
                _move.Drain();
            }
            _vmaLock.Dispose();
        }
        finally
        {
            mm.MmapLock.ExitRead();
        }
    }

    // The context, or ObjectDisposedException once the channel or its address space is disposed.
    private UserFaultContext Live
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0 || _context.IsReleased, this);
            ObjectDisposedException.ThrowIf(AddressSpace.Descriptor.IsExiting, AddressSpace);
            return _context;
        }
    }

    private static UserFaultEvent ToEvent(in UserFaultMessage message)
    {
        UserFaultChannel? child = null;
        if (message.Child is { } context)
        {
            // The child's channel is made when its fork event is read (the kernel installs the new fd then).
            child = context.Channel as UserFaultChannel ?? new UserFaultChannel((AddressSpace)context.Owner, context);
        }
        return new UserFaultEvent(message.Kind, message.Address, message.Second, message.Length, message.Reason, message.Access,
            message.ThreadId, message.CpuId, child);
    }
}
