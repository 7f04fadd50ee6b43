namespace Faultline;

/// <summary>
/// The write watches of one address space, as an immutable array replaced under a lock: a Cpu delivering a notice
/// reads it without any lock. Watches never overlap, so an address finds at most one.
/// </summary>
internal sealed class WriteWatchList
{
    private readonly Lock _gate = new();
    private WriteWatch[] _watches = [];

    /// <summary>The watch covering <paramref name="address"/>, or null. Thread-safe, lock-free.</summary>
    public WriteWatch? Find(ulong address)
    {
        // Acquire; pairs with the release store in Add/Remove, so a watch found is fully constructed.
        foreach (WriteWatch watch in Volatile.Read(ref _watches))
        {
            if (address - watch.Address < watch.Length)
            {
                return watch;
            }
        }
        return null;
    }

    /// <summary>Adds <paramref name="watch"/>; false, adding nothing, when it overlaps a registered one.</summary>
    public bool TryAdd(WriteWatch watch)
    {
        lock (_gate)
        {
            foreach (WriteWatch other in _watches)
            {
                if (watch.Address < other.Address + other.Length && other.Address < watch.Address + watch.Length)
                {
                    return false;
                }
            }
            // Release: the array and the watch are complete before a lock-free Find can see them.
            Volatile.Write(ref _watches, [.. _watches, watch]);
            return true;
        }
    }

    /// <summary>Removes <paramref name="watch"/> if registered.</summary>
    public void Remove(WriteWatch watch)
    {
        lock (_gate)
        {
            Volatile.Write(ref _watches, Array.FindAll(_watches, w => !ReferenceEquals(w, watch)));
        }
    }
}
