using Faultline.VmStat;

namespace Faultline.Mm;

/// <summary>
/// <c>kswapd</c>: a background thread that sleeps until an allocation leaves fewer free frames than the low watermark,
/// then reclaims until the high watermark is reached or reclaim stops making progress.
/// </summary>
/// <remarks>Thread-safety: <see cref="Stop"/> may be called from any thread, once; it waits for the thread to end.</remarks>
internal sealed class Kswapd
{
    // How long a sleep lasts without a wake: the thread re-checks the watermark now and then, so a wake that raced
    // with the end of a run is never lost for long.
    private static readonly TimeSpan Nap = TimeSpan.FromMilliseconds(200);

    private readonly MemoryNode _node;
    private readonly Thread _thread;
    private volatile bool _stopping;

    /// <summary>Starts the thread for <paramref name="node"/>.</summary>
    public Kswapd(MemoryNode node)
    {
        _node = node;
        _thread = new Thread(Run) { IsBackground = true, Name = "faultline-kswapd" };
        _thread.Start();
    }

    /// <summary>Ends the thread and waits for it (its run in progress finishes first).</summary>
    public void Stop()
    {
        _stopping = true;
        _node.Memory.WakeReclaim();
        _thread.Join();
    }

    private void Run()
    {
        while (!_stopping)
        {
            _node.Memory.WaitForReclaimWanted(Nap);
            if (_stopping || _node.Memory.FreeFrames >= _node.Memory.LowWatermark)
            {
                continue;
            }
            _node.Counters.AddShared(VmEvent.KswapdRun);
            // balance_pgdat: batches until the high watermark, giving up when a batch frees nothing.
            while (!_stopping && _node.Memory.FreeFrames < _node.Memory.HighWatermark
                && PageReclaim.Shrink(_node, PageReclaim.Batch, direct: false) > 0)
            {
            }
        }
    }
}
