namespace Faultline.Backing;

/// <summary>
/// A file's background flusher (the kernel's writeback worker woken at <c>dirty_background_ratio</c>): every period it
/// counts the file's dirty pages and, when they reach the given share of its cached pages, writes them back as
/// <c>fsync</c> does (mappings cleaned first). The kernel's ratio is of all dirtyable memory; this one is per file.
/// </summary>
/// <remarks>
/// The timer's callbacks never overlap (each re-arms the next after it ran). Stopped by <see cref="Dispose"/>, which the
/// cache calls when it is released; a callback already running finishes first (it holds the inode lock, which the
/// release takes). Thread-safe.
/// </remarks>
internal sealed class BackgroundWriteback : IDisposable
{
    private readonly PageCache _cache;
    private readonly double _ratio;
    private readonly TimeSpan _period;
    private readonly Timer _timer;
    private int _stopped;
    private int _runs;

    /// <summary>Starts flushing <paramref name="cache"/> every <paramref name="period"/> at <paramref name="ratio"/>.</summary>
    public BackgroundWriteback(PageCache cache, double ratio, TimeSpan period)
    {
        _cache = cache;
        _ratio = ratio;
        _period = period;
        _timer = new Timer(static state => ((BackgroundWriteback)state!).Run(), this, period, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Write-backs the flusher has run.</summary>
    public int Runs => Volatile.Read(ref _runs);

    /// <summary>Stops the timer; later callbacks do nothing.</summary>
    public void Dispose()
    {
        // Release store; a callback reads it (acquire) before touching the cache.
        Volatile.Write(ref _stopped, 1);
        _timer.Dispose();
    }

    private void Run()
    {
        if (Volatile.Read(ref _stopped) != 0)
        {
            return;
        }
        if (_cache.WriteBackIfDirtyAbove(_ratio))
        {
            Interlocked.Increment(ref _runs);
        }
        if (Volatile.Read(ref _stopped) == 0)
        {
            try
            {
                _timer.Change(_period, Timeout.InfiniteTimeSpan);
            }
            catch (ObjectDisposedException)
            {
                // Stopped between the check and the re-arm: nothing more to run.
            }
        }
    }
}
