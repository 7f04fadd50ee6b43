using static Faultline.Tests.Conformance.Stack.StackScript;

namespace Faultline.Tests.Conformance.Stack;

/// <summary>
/// Random stack-growth scripts: fixed mappings (half of them MAP_GROWSDOWN, some MAP_LOCKED) of random protection,
/// munmap and mprotect (sometimes with PROT_GROWSDOWN) of random ranges, and loads and stores aimed mostly just below
/// the grows-down mappings made so far (1 to 300 pages: across the guard gap and the stack limit), each step followed
/// by a report.
/// </summary>
internal static class StackScriptGenerator
{
    private const ulong Page = PageGeometry.PageSize;
    private const int Anon = 0x02 | 0x20 | 0x10; // MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED
    private const int GrowsDown = 0x100, Locked = 0x2000, ProtGrowsDown = 0x0100_0000;
    private static readonly int[] s_protections = [0, 1, 3, 3];

    /// <summary>A script of <paramref name="steps"/> operations over <paramref name="pages"/> pages from <paramref name="start"/>.</summary>
    public static StackScript Generate(int seed, ulong start, int pages, int steps, ulong stackLimit, ulong? lockLimit)
    {
        var random = new Random(seed);
        var stacks = new List<ulong>();
        var lines = new List<string>();
        ulong RandomPage(int from, int to) => start + (ulong)random.Next(from, to) * Page;
        for (int i = 0; i < steps; i++)
        {
            int kind = random.Next(10);
            if (kind < 3)
            {
                ulong at = RandomPage(pages / 4, pages - 16);
                int flags = Anon | (random.Next(2) == 0 ? GrowsDown : 0) | (random.Next(8) == 0 ? Locked : 0);
                if ((flags & GrowsDown) != 0)
                {
                    stacks.Add(at);
                }
                lines.Add($"map {Hex(at)} {Hex((ulong)random.Next(1, 9) * Page)} {s_protections[random.Next(s_protections.Length)]} {Hex((ulong)flags)}");
            }
            else if (kind == 3)
            {
                lines.Add($"munmap {Hex(RandomPage(0, pages - 8))} {Hex((ulong)random.Next(1, 9) * Page)}");
            }
            else if (kind == 4)
            {
                int protection = s_protections[random.Next(s_protections.Length)] | (random.Next(3) == 0 ? ProtGrowsDown : 0);
                lines.Add($"protect {Hex(RandomPage(0, pages - 8))} {Hex((ulong)random.Next(1, 9) * Page)} {protection}");
            }
            else
            {
                ulong target = stacks.Count > 0 && random.Next(4) != 0
                    ? stacks[random.Next(stacks.Count)] - (ulong)random.Next(1, 301) * Page + (ulong)random.Next((int)Page)
                    : RandomPage(0, pages) + (ulong)random.Next((int)Page);
                lines.Add(random.Next(3) == 0 ? $"read {Hex(target)}" : $"write {Hex(target)} {random.Next(1, 256)}");
            }
            lines.Add("report");
        }
        return new StackScript($"random seed {seed}", start, (ulong)pages * Page, stackLimit, lockLimit, lines);
    }
}
