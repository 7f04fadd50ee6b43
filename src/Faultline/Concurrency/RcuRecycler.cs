using System.Diagnostics.CodeAnalysis;

namespace Faultline.Concurrency;

/// <summary>
/// Reuse of objects that lockless VMA-tree walkers may still hold (tree nodes, VMAs): the role
/// <c>SLAB_TYPESAFE_BY_RCU</c> and <c>call_rcu</c> play for <c>vm_area_struct</c> and maple nodes, done as
/// epoch-based reclamation over <see cref="RcuDomain.WalkEpoch"/>. An object retired during epoch <c>e</c> (after it
/// was unlinked from the writer's version, before or after that version was published) is handed out again only once
/// the epoch reached <c>e + 2</c>: every walk section that could have reached it has ended by then.
/// </summary>
/// <remarks>
/// Not thread-safe: every call is made under the owner's mmap write lock, which also serialises the epoch's advances.
/// Nothing is allocated once the stacks have grown to the working set; a free list beyond <see cref="MaxFree"/>
/// objects leaves the rest to the garbage collector, so a burst (one large unmap) does not pin memory for good.
/// </remarks>
/// <typeparam name="T">The recycled type.</typeparam>
internal sealed class RcuRecycler<T>
    where T : class
{
    /// <summary>Objects kept ready for reuse at most.</summary>
    public const int MaxFree = 512;

    private readonly RcuDomain _domain;
    // Retired during epoch e: _limbo[e % 3]. Only the last three epochs can hold anything.
    private readonly Stack<T>[] _limbo = [new(), new(), new()];
    private readonly Stack<T> _free = new();
    private long _epoch;

    /// <summary>A recycler over <paramref name="domain"/>'s walk epoch.</summary>
    public RcuRecycler(RcuDomain domain)
    {
        _domain = domain;
        _epoch = domain.WalkEpoch;
    }

    /// <summary>Objects ready for reuse (tests).</summary>
    public int FreeCount => _free.Count;

    /// <summary>Objects waiting for the epoch to move on (tests).</summary>
    public int RetiredCount => _limbo[0].Count + _limbo[1].Count + _limbo[2].Count;

    /// <summary>Retires an object lockless walkers may still reach: it is reused two epochs from now at the earliest.</summary>
    public void Retire(T item)
    {
        CatchUp();
        _limbo[_epoch % 3].Push(item);
    }

    /// <summary>Returns at once an object no walker can have seen (never published), for immediate reuse.</summary>
    public void Release(T item)
    {
        if (_free.Count < MaxFree)
        {
            _free.Push(item);
        }
    }

    /// <summary>An object free for reuse, or false.</summary>
    public bool TryTake([NotNullWhen(true)] out T? item)
    {
        CatchUp();
        return _free.TryPop(out item);
    }

    // Moves what was retired at epochs at most (now - 2) to the free list. The lists of epochs below (_epoch - 2) were
    // drained when _epoch was reached, so at most three slots are visited.
    private void CatchUp()
    {
        long now = _domain.WalkEpoch;
        if (now == _epoch)
        {
            return;
        }
        for (long e = Math.Max(_epoch - 2, 0); e <= Math.Min(_epoch, now - 2); e++)
        {
            Stack<T> retired = _limbo[e % 3];
            while (retired.TryPop(out T? item))
            {
                Release(item);
            }
        }
        _epoch = now;
    }
}
