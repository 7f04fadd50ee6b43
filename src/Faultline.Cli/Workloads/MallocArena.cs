using Faultline.Cli.Running;

namespace Faultline.Cli.Workloads;

/// <summary>
/// The brk heap of the malloc workload's mutators, one per address space as glibc's main arena, under one lock as the
/// arena's mutex: chunks are carved from the top, the break moves up when it is short, freed chunks at the top are
/// popped, and the break comes down once <see cref="TrimThreshold"/> bytes lie free above the top (glibc's
/// <c>M_TRIM_THRESHOLD</c>). <c>Native/malloc_bench.c</c> does the same with the real <c>brk()</c>.
/// </summary>
/// <remarks>Thread-safe: every member takes the lock.</remarks>
internal sealed class MallocArena
{
    /// <summary>glibc's default <c>M_TRIM_THRESHOLD</c>: 128 KiB.</summary>
    public const ulong TrimThreshold = 128 << 10;

    private readonly AddressSpace _space;
    private readonly object _lock = new();
    private readonly List<(ulong Start, ulong Length, bool Freed)> _chunks = [];
    private readonly ulong _start;
    private ulong _top;
    private ulong _break;

    /// <summary>An empty heap at the current break of <paramref name="space"/>.</summary>
    public MallocArena(AddressSpace space)
    {
        _space = space;
        _start = _top = _break = space.Brk(0);
    }

    /// <summary>Carves <paramref name="length"/> bytes from the top, moving the break up when it is short; counts brk calls as churn ops.</summary>
    /// <exception cref="InvalidOperationException">brk refused to move.</exception>
    public ulong Allocate(ulong length, WorkerStats stats)
    {
        lock (_lock)
        {
            ulong start = _top;
            if (start + length > _break)
            {
                MoveBreak(start + length, stats);
            }
            _chunks.Add((start, length, false));
            _top = start + length;
            return start;
        }
    }

    /// <summary>Frees the chunk at <paramref name="start"/>: pops the freed chunks at the top, trims the break.</summary>
    /// <exception cref="InvalidOperationException">brk refused to move.</exception>
    public void Free(ulong start, WorkerStats stats)
    {
        lock (_lock)
        {
            int index = _chunks.FindIndex(c => c.Start == start);
            _chunks[index] = _chunks[index] with { Freed = true };
            while (_chunks.Count > 0 && _chunks[^1].Freed)
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
}
