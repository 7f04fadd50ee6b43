namespace Faultline.Examples.GuestLoader;

/// <summary>
/// Maps an <see cref="ElfImage"/>'s segments as empty anonymous memory registered with a user-fault channel for
/// missing pages, and fills each page from the file on its first access (the lazy-restore pattern of userfaultfd):
/// nothing is copied until a Cpu touches it, and pages never touched are never read.
/// </summary>
/// <remarks>Dispose after the Cpus stop using the image: it stops the handler thread and closes the channel.</remarks>
public sealed class DemandLoader : IDisposable
{
    private readonly ElfImage _image;
    private readonly UserFaultChannel _channel;
    private readonly UserFaultCallback _handler;
    // Used by the handler thread only (the callback handles one message at a time).
    private readonly byte[] _page = new byte[PageGeometry.PageSize];
    private long _pagesLoaded;
    private long _alreadyLoaded;

    /// <summary>Maps the segments of <paramref name="image"/> in <paramref name="space"/> and starts the handler.</summary>
    public DemandLoader(AddressSpace space, ElfImage image)
    {
        _image = image;
        foreach (ElfSegment segment in image.Segments)
        {
            // Segments that share a page (old linkers) map it once, with both protections: load_elf_binary's
            // later mapping of the page replaces the earlier one the same way.
            space.Map(segment.PageStart, segment.PageEnd - segment.PageStart, segment.Protection,
                MapFlags.PrivateAnonymous | MapFlags.Fixed);
        }
        _channel = new UserFaultChannel(space);
        foreach (ElfSegment segment in image.Segments)
        {
            Errno registered = _channel.Register(segment.PageStart, segment.PageEnd - segment.PageStart, UserFaultModes.Missing);
            if (registered != Errno.None)
            {
                throw new InvalidOperationException($"registering {segment.PageStart:x} for missing faults: {registered}");
            }
        }
        _handler = new UserFaultCallback(_channel, Resolve);
    }

    /// <summary>Pages the handler filled from the file.</summary>
    public long PagesLoaded => Interlocked.Read(ref _pagesLoaded);

    /// <summary>Faults whose page another fault's resolution had already filled (two Cpus on one page).</summary>
    public long AlreadyLoaded => Interlocked.Read(ref _alreadyLoaded);

    /// <summary>The exception that stopped the handler, if any.</summary>
    public Exception? Error => _handler.Error;

    /// <inheritdoc/>
    public void Dispose()
    {
        _handler.Dispose();
        _channel.Dispose();
    }

    private void Resolve(UserFaultEvent message)
    {
        if (message.Kind != UserFaultEventKind.PageFault)
        {
            return;
        }
        ulong page = message.Address & ~PageGeometry.PageOffsetMask;
        _image.FillPage(page, _page);
        // UFFDIO_COPY: fills a fresh frame, maps it with the VMA's protection and wakes every fault waiting on it.
        Errno copied = _channel.Copy(page, _page);
        if (copied == Errno.None)
        {
            Interlocked.Increment(ref _pagesLoaded);
        }
        else if (copied == Errno.EEXIST)
        {
            // A second fault on a page already filled: wake it explicitly, as userfaultfd managers do.
            Interlocked.Increment(ref _alreadyLoaded);
            _channel.Wake(page, PageGeometry.PageSize);
        }
        else
        {
            throw new InvalidOperationException($"UFFDIO_COPY at {page:x}: {copied}");
        }
    }
}
