namespace Faultline;

/// <summary>
/// The callback mode of a <see cref="UserFaultChannel"/>: a dedicated thread reads the channel and calls a handler
/// for every message (the fault-handling thread of a userfaultfd manager). The handler resolves faults through the
/// channel (<see cref="UserFaultChannel.Copy(ulong, ReadOnlySpan{byte}, UserFaultResolveFlags)"/> and kin).
/// </summary>
/// <remarks>
/// Thread safety: the handler runs on the callback's thread only, one message at a time. If it throws, the thread
/// stops and the exception is kept in <see cref="Error"/>; faults read by then stay blocked until resolved by other
/// means or until the channel is disposed. <see cref="Dispose"/> stops the thread and waits for it (the channel stays
/// open); it must not be called from the handler.
/// </remarks>
public sealed class UserFaultCallback : IDisposable
{
    private readonly UserFaultChannel _channel;
    private readonly Action<UserFaultEvent> _handler;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private long _handled;

    /// <summary>Starts a thread that calls <paramref name="handler"/> for every message of <paramref name="channel"/>.</summary>
    public UserFaultCallback(UserFaultChannel channel, Action<UserFaultEvent> handler)
    {
        ArgumentNullException.ThrowIfNull(channel);
        ArgumentNullException.ThrowIfNull(handler);
        _channel = channel;
        _handler = handler;
        _thread = new Thread(Run) { IsBackground = true, Name = "Faultline user-fault handler" };
        _thread.Start();
    }

    /// <summary>The exception that stopped the handler, if any (read after <see cref="Dispose"/> or once it stopped).</summary>
    public Exception? Error { get; private set; }

    /// <summary>Messages handled so far.</summary>
    public long Handled => Interlocked.Read(ref _handled);

    /// <summary>Stops the thread and waits for the message in hand to be handled.</summary>
    public void Dispose()
    {
        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
    }

    private void Run()
    {
        try
        {
            while (true)
            {
                UserFaultEvent message = _channel.Read(_stop.Token);
                _handler(message);
                Interlocked.Increment(ref _handled);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
        catch (ObjectDisposedException)
        {
            // The channel or its address space was closed: nothing more will come.
        }
        catch (Exception e)
        {
            Error = e;
        }
    }
}
