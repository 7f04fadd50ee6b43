namespace Faultline.Tests.Support;

/// <summary>Runs an action on a dedicated thread and hands back its result or exception.</summary>
internal sealed class ThreadRunner<T>
{
    private readonly Thread _thread;
    private T? _result;
    private Exception? _error;

    /// <summary>Starts <paramref name="body"/> on a new thread.</summary>
    public ThreadRunner(Func<T> body)
    {
        _thread = new Thread(() =>
        {
            try
            {
                _result = body();
            }
            catch (Exception e)
            {
                _error = e;
            }
        })
        { IsBackground = true };
        _thread.Start();
        ManagedThreadId = _thread.ManagedThreadId;
    }

    /// <summary>The thread's managed id (for probe filters).</summary>
    public int ManagedThreadId { get; }

    /// <summary>Waits for the result (rethrows the thread's exception).</summary>
    public T Join(int timeoutMs = 30_000)
    {
        if (!_thread.Join(timeoutMs))
        {
            throw new TimeoutException("thread did not finish");
        }
        if (_error is not null)
        {
            throw new InvalidOperationException("thread failed", _error);
        }
        return _result!;
    }

    /// <summary>True when the thread finished.</summary>
    public bool IsDone => !_thread.IsAlive;
}
