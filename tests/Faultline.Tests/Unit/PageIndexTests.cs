using Faultline.Backing;
using Xunit;

namespace Faultline.Tests.Unit;

/// <summary>
/// The page cache's radix index: inserts at offsets that make it grow at the top, occupied slots, removal of a range,
/// the ordered snapshot, and lock-free lookups that keep finding an entry while a writer grows the index around it.
/// </summary>
public sealed class PageIndexTests
{
    private static readonly ulong[] Offsets = [0, 1, 63, 64, 4095, 4096, 1UL << 20, (1UL << 36) + 5, (1UL << 51) - 1];

    [Fact]
    public void Entries_are_found_at_every_height_and_a_taken_slot_refuses_an_insert()
    {
        var index = new PageIndex(1);
        for (int i = 0; i < Offsets.Length; i++)
        {
            Assert.True(index.TryInsert(Offsets[i], i + 1));
        }
        for (int i = 0; i < Offsets.Length; i++)
        {
            Assert.Equal(i + 1, index.Lookup(Offsets[i]));
        }
        Assert.False(index.TryInsert(4096, 99));
        Assert.Equal(Offsets.IndexOf(4096UL) + 1, index.Lookup(4096));
        Assert.Equal(0, index.Lookup(2));
        Assert.Equal(0, index.Lookup(1UL << 60));
        Assert.Equal(Offsets.Length, index.Count);
    }

    [Fact]
    public void Removal_takes_exactly_the_range_and_the_snapshot_is_in_offset_order()
    {
        var index = new PageIndex(8);
        for (int i = 0; i < Offsets.Length; i++)
        {
            index.TryInsert(Offsets[i], i + 1);
        }
        var removed = new List<int>();
        index.RemoveRange(64, 1UL << 20, removed);
        Assert.Equal([4, 5, 6], removed.Order());
        Assert.Equal(Offsets.Length - 3, index.Count);

        var found = new List<(ulong PageOffset, int Frame)>();
        index.CollectRange(0, ulong.MaxValue, found);
        Assert.Equal([0UL, 1, 63, 1UL << 20, (1UL << 36) + 5, (1UL << 51) - 1], found.Select(f => f.PageOffset));
        Assert.Equal([1, 2, 3, 7, 8, 9], found.Select(f => f.Frame));

        removed.Clear();
        index.RemoveRange(0, ulong.MaxValue, removed);
        Assert.Equal(6, removed.Count);
        Assert.Equal(0, index.Count);
        Assert.All(Offsets, offset => Assert.Equal(0, index.Lookup(offset)));
    }

    [Fact]
    public void A_lock_free_reader_keeps_finding_an_entry_while_the_index_grows()
    {
        var index = new PageIndex(1);
        index.TryInsert(5, 42);
        int misses = 0;
        using var done = new ManualResetEventSlim();
        var reader = new Thread(() =>
        {
            while (!done.IsSet)
            {
                if (index.Lookup(5) != 42)
                {
                    Interlocked.Increment(ref misses);
                }
            }
        });
        reader.Start();
        // Each insert one level higher than the last: the root is replaced under the reader eight times.
        for (int level = 1; level <= 8; level++)
        {
            Assert.True(index.TryInsert(1UL << (level * 6), level + 100));
            Thread.Sleep(1);
        }
        done.Set();
        reader.Join();
        Assert.Equal(0, misses);
        Assert.Equal(9, index.Count);
    }
}
