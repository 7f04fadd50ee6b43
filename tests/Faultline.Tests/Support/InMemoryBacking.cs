using Faultline.Backing;
using Faultline.Physical;
using Xunit;

namespace Faultline.Tests.Support;

/// <summary>
/// A backing whose pages live in frames of an address space's guest RAM, one per page offset, each filled with
/// <see cref="PatternByte"/> and referenced by the backing (a page cache that never evicts). It can answer SIGBUS past
/// <see cref="EndOfFile"/>, RETRY when asked speculatively, refuse a split, and it records its notifications.
/// </summary>
internal sealed class InMemoryBacking : IBacking, IDisposable
{
    private readonly PhysicalMemory _memory;
    private readonly long[] _frames;

    /// <summary>Allocates and fills <paramref name="pages"/> frames of <paramref name="memory"/>.</summary>
    public InMemoryBacking(PhysicalMemory memory, int pages, string name = "/in-memory/backing", bool speculativeSafe = true)
    {
        _memory = memory;
        MapsName = name;
        IsSpeculativeSafe = speculativeSafe;
        EndOfFile = (ulong)pages;
        _frames = new long[pages];
        for (int offset = 0; offset < pages; offset++)
        {
            int pfn = memory.Allocate();
            Assert.NotEqual(PhysicalMemory.NoFrame, pfn);
            memory.PrepareZeroed(pfn);
            unsafe
            {
                new Span<byte>(memory.FrameAddress(pfn), PageGeometry.PageSize).Fill(PatternByte((ulong)offset));
            }
            ref FrameInfo info = ref memory.Info(pfn);
            info.Kind = FrameKind.PageCache;
            info.Mapping = this;
            info.Index = (ulong)offset;
            memory.SetFlags(pfn, FrameFlags.Uptodate);
            _frames[offset] = pfn;
        }
    }

    /// <summary>Pages at or past this offset answer SIGBUS (a file's size, in pages).</summary>
    public ulong EndOfFile { get; set; }

    /// <summary>Answer RETRY to every speculative fault (a page that would have to be read in).</summary>
    public bool RetryWhenSpeculative { get; set; }

    /// <summary>The page offset a split is refused at, if any.</summary>
    public ulong? RefuseSplitAt { get; set; }

    /// <summary>Faults answered, and those asked speculatively.</summary>
    public int Faults, SpeculativeFaults;

    /// <summary>Notifications received, in order: "open", "close", "may_split", each with the VMA's page range.</summary>
    public List<(string Kind, ulong PageOffset, ulong Pages)> Notifications { get; } = [];

    /// <inheritdoc />
    public bool IsAnonymous => false;

    /// <inheritdoc />
    public bool IsSpeculativeSafe { get; }

    /// <inheritdoc />
    public string MapsName { get; }

    /// <summary>The byte every byte of page <paramref name="pageOffset"/> holds.</summary>
    public static byte PatternByte(ulong pageOffset) => (byte)(0xA0 + pageOffset);

    /// <summary>The frame holding page <paramref name="pageOffset"/>.</summary>
    public long FrameOf(ulong pageOffset) => _frames[pageOffset];

    /// <summary>Opens minus closes: the VMAs using the backing now.</summary>
    public int OpenCount => Notifications.Count(n => n.Kind == "open") - Notifications.Count(n => n.Kind == "close");

    /// <inheritdoc />
    public BackingFaultStatus Fault(ulong pageOffset, AccessKind access, bool speculative, out long pfn)
    {
        pfn = PhysicalMemory.NoFrame;
        Interlocked.Increment(ref Faults);
        if (speculative)
        {
            Interlocked.Increment(ref SpeculativeFaults);
        }
        if (pageOffset >= EndOfFile || pageOffset >= (ulong)_frames.Length)
        {
            return BackingFaultStatus.SigBus;
        }
        if (speculative && RetryWhenSpeculative)
        {
            return BackingFaultStatus.Retry;
        }
        pfn = _frames[pageOffset];
        _memory.Get(pfn);
        return BackingFaultStatus.Ok;
    }

    /// <inheritdoc />
    public void Opened(ulong pageOffset, ulong pages) => Notifications.Add(("open", pageOffset, pages));

    /// <inheritdoc />
    public void Closed(ulong pageOffset, ulong pages) => Notifications.Add(("close", pageOffset, pages));

    /// <inheritdoc />
    public bool MaySplit(ulong pageOffset, ulong pages, ulong splitPageOffset)
    {
        Notifications.Add(("may_split", pageOffset, pages));
        return RefuseSplitAt != splitPageOffset;
    }

    /// <summary>Drops the backing's reference on every page (eviction); mapped pages stay until unmapped.</summary>
    public void Dispose()
    {
        foreach (long pfn in _frames)
        {
            _memory.Put(pfn);
        }
    }
}
