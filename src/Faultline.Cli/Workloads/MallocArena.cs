using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// The brk heap of the malloc workload's mutators, one per address space as glibc's main arena, under one lock as the
/// arena's mutex. A request takes the first free chunk that fits (whole: chunks are never split), else is carved from
/// the top, the break moving up when it is short; a freed chunk merges with free neighbours, a free chunk at the top
/// is popped, and the break comes down once <see cref="TrimThreshold"/> bytes lie free above the top (glibc's
/// <c>M_TRIM_THRESHOLD</c>). The chunks tile the heap from its start to the top, so at most one free chunk lies
/// between two in use. <c>Native/malloc_bench.c</c> does the same with the real <c>brk()</c>.
/// </summary>
/// <remarks>Thread-safe: every member takes the lock.</remarks>
internal sealed class MallocArena
{
    /// <summary>glibc's default <c>M_TRIM_THRESHOLD</c>: 128 KiB.</summary>
    public const ulong TrimThreshold = 128 << 10;

    private readonly AddressSpace _space;
    private readonly Lock _lock = new();
    private readonly List<Chunk> _chunks = [];
    private readonly ulong _start;
    private ulong _top;
    private ulong _break;

    /// <summary>An empty heap at the current break of <paramref name="space"/>.</summary>
    public MallocArena(AddressSpace space)
    {
        _space = space;
        _start = _top = _break = space.Brk(0);
    }

    /// <summary>Chunks in the heap, free ones included (a free chunk at the top is popped at once).</summary>
    public int Chunks
    {
        get
        {
            lock (_lock)
            {
                return _chunks.Count;
            }
        }
    }

    /// <summary>
    /// The start of at least <paramref name="length"/> bytes: the first free chunk that fits, else carved from the top,
    /// moving the break up when it is short; each brk call counts as a churn op.
    /// </summary>
    /// <exception cref="InvalidOperationException">brk refused to move.</exception>
    public ulong Allocate(ulong length, WorkerStats stats)
    {
        lock (_lock)
        {
            int free = _chunks.FindIndex(c => c.Free && c.Length >= length);
            if (free >= 0)
            {
                _chunks[free] = _chunks[free] with { Free = false };
                return _chunks[free].Start;
            }
            ulong start = _top;
            if (start + length > _break)
            {
                MoveBreak(start + length, stats);
            }
            _chunks.Add(new Chunk(start, length, Free: false));
            _top = start + length;
            return start;
        }
    }

    /// <summary>Frees the chunk at <paramref name="start"/>: merges it with free neighbours, pops a free top, trims the break.</summary>
    /// <exception cref="InvalidOperationException">brk refused to move.</exception>
    public void Free(ulong start, WorkerStats stats)
    {
        lock (_lock)
        {
            int i = _chunks.FindIndex(c => c.Start == start);
            _chunks[i] = _chunks[i] with { Free = true };
            if (i + 1 < _chunks.Count && _chunks[i + 1].Free)
            {
                _chunks[i] = _chunks[i] with { Length = _chunks[i].Length + _chunks[i + 1].Length };
                _chunks.RemoveAt(i + 1);
            }
            if (i > 0 && _chunks[i - 1].Free)
            {
                _chunks[i - 1] = _chunks[i - 1] with { Length = _chunks[i - 1].Length + _chunks[i].Length };
                _chunks.RemoveAt(i);
            }
            if (_chunks.Count > 0 && _chunks[^1].Free)
            {
                _chunks.RemoveAt(_chunks.Count - 1);
            }
            _top = _chunks.Count == 0 ? _start : _chunks[^1].Start + _chunks[^1].Length;
            if (_break - _top >= TrimThreshold)
            {
                MoveBreak(_top, stats);
            }
        }
    }

    private void MoveBreak(ulong to, WorkerStats stats)
    {
        ulong moved = _space.Brk(to);
        stats.ChurnOps++;
        if (moved != to)
        {
            throw new InvalidOperationException($"brk(0x{to:x}) refused: the break stayed at 0x{moved:x}");
        }
        _break = to;
    }

    private readonly record struct Chunk(ulong Start, ulong Length, bool Free);
}
