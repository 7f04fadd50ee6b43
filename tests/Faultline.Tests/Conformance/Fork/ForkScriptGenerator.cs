using Faultline.Host;

namespace Faultline.Tests.Conformance.Fork;

/// <summary>
/// Random fork scripts from a seed: process 0 maps, protects, writes and gives fork advice; it forks; parent and child
/// write, read, protect, map, unmap and madvise on their own sides; one of them forks again (a grandchild when the
/// child still lives); and reports come every few steps and at the end. The advice is MADV_DONTFORK, MADV_DOFORK,
/// MADV_WIPEONFORK, MADV_KEEPONFORK and MADV_DONTNEED, given before either fork too, so that a child really lacks a
/// VMA or finds it wiped; some of its ranges are wide and cross several VMAs or a hole (ENOMEM, the VMAs around the
/// hole advised all the same). Addresses favour pages already touched, then pages mappings covered,
/// so most accesses after a fork meet shared copy-on-write pages. An mprotect is only generated over a range its process has mapped (see
/// <see cref="RandomSequenceConformanceTests"/> on Linux's partial change before a hole).
/// </summary>
internal static class ForkScriptGenerator
{
    /// <summary>The region's size in pages.</summary>
    public const int Pages = 64;

    /// <summary>At most this many processes are created per script (process 0 included).</summary>
    public const int MaxProcesses = 5;

    private const ulong Page = Linux.PAGE_SIZE;

    private static readonly Advice[] Advices =
    [
        Advice.DontFork, Advice.DontFork, Advice.DontFork, Advice.WipeOnFork, Advice.WipeOnFork, Advice.WipeOnFork,
        Advice.DoFork, Advice.KeepOnFork, Advice.DontNeed, Advice.DontNeed,
    ];

    private static readonly int[] Prots =
    [
        Linux.PROT_READ | Linux.PROT_WRITE, Linux.PROT_READ | Linux.PROT_WRITE, Linux.PROT_READ | Linux.PROT_WRITE,
        Linux.PROT_READ, Linux.PROT_NONE, Linux.PROT_READ | Linux.PROT_WRITE | Linux.PROT_EXEC,
    ];

    public static ForkScript Generate(int seed)
    {
        var random = new Random(seed);
        var script = new ForkScript(KernelForkRunner.RegionBase, Pages * Page, $"seed {seed}");
        var state = new State(script, random);

        // Process 0 alone: mappings over the reservation (the first one writable), then writes into them.
        state.MapRandom(0, Linux.PROT_READ | Linux.PROT_WRITE);
        for (int i = 0, maps = random.Next(1, 4); i < maps; i++)
        {
            state.MapRandom(0);
        }
        for (int i = 0, writes = random.Next(3, 9); i < writes; i++)
        {
            state.Write(0);
        }
        for (int i = 0, steps = random.Next(4, 10); i < steps; i++)
        {
            state.RandomStep(0, allowForkAndExit: false);
        }
        for (int i = 0, advice = random.Next(3); i < advice; i++)
        {
            state.AdviseRandom(0);
        }
        state.Report();
        state.Fork(0);
        state.RandomSteps(random.Next(6, 14));
        // Again, preferring the child, so most scripts hold a grandchild.
        state.Fork(state.Live.Contains(1) && random.Next(4) != 0 ? 1 : state.AnyLive());
        state.RandomSteps(random.Next(6, 14));
        state.Report();
        return script;
    }

    /// <summary>
    /// The generator's model: live processes, which pages each has mapped (for mprotect) and which of those are
    /// MADV_DONTFORK (a fork's child lacks them).
    /// </summary>
    private sealed class State
    {
        private readonly ForkScript _script;
        private readonly Random _random;
        private readonly Dictionary<int, bool[]> _mapped = new() { [0] = Enumerable.Repeat(true, Pages).ToArray() };
        private readonly Dictionary<int, bool[]> _dontFork = new() { [0] = new bool[Pages] };
        private readonly List<int> _hot = [];
        private readonly List<int> _touched = [];

        public State(ForkScript script, Random random)
        {
            _script = script;
            _random = random;
        }

        public IReadOnlyCollection<int> Live => _mapped.Keys;

        public int AnyLive() => _mapped.Keys.ElementAt(_random.Next(_mapped.Count));

        public void RandomSteps(int count)
        {
            for (int i = 0; i < count; i++)
            {
                RandomStep(AnyLive(), allowForkAndExit: true);
                if (_random.Next(6) == 0)
                {
                    Report();
                }
            }
        }

        public void RandomStep(int proc, bool allowForkAndExit)
        {
            int roll = _random.Next(100);
            if (roll < 36)
            {
                Write(proc);
            }
            else if (roll < 50)
            {
                Read(proc);
            }
            else if (roll < 61)
            {
                ProtectRandom(proc);
            }
            else if (roll < 70)
            {
                MapRandom(proc);
            }
            else if (roll < 79)
            {
                (int first, int count) = RandomRange();
                _script.Munmap(proc, Address(first), (ulong)count * Page);
                Array.Fill(_mapped[proc], false, first, count);
                Array.Fill(_dontFork[proc], false, first, count);
            }
            else if (roll < 88)
            {
                AdviseRandom(proc);
            }
            else if (allowForkAndExit && roll < 94 && _script.Processes < MaxProcesses)
            {
                Fork(proc);
            }
            else if (allowForkAndExit && roll < 97 && _mapped.Count > 1)
            {
                _script.Exit(proc);
                _mapped.Remove(proc);
                _dontFork.Remove(proc);
            }
            else
            {
                Read(proc);
            }
        }

        public void Write(int proc) => _script.Write(proc, Touch(RandomAddress()), (byte)_random.Next(1, 256));

        private void Read(int proc) => _script.Read(proc, Touch(RandomAddress()));

        public void MapRandom(int proc, int? prot = null)
        {
            (int first, int count) = RandomRange();
            // One mapping in four is shared anonymous memory: both sides of a later fork map the same pages.
            if (_random.Next(4) == 0)
            {
                _script.SharedMap(proc, Address(first), (ulong)count * Page, prot ?? Prots[_random.Next(Prots.Length)]);
            }
            else
            {
                _script.Map(proc, Address(first), (ulong)count * Page, prot ?? Prots[_random.Next(Prots.Length)]);
            }
            Array.Fill(_mapped[proc], true, first, count);
            Array.Fill(_dontFork[proc], false, first, count);
            _hot.AddRange(Enumerable.Range(first, count));
        }

        // Usually a range near touched pages; one time in four a wide one, over several VMAs and often a hole.
        public void AdviseRandom(int proc)
        {
            (int first, int count) = RandomRange();
            if (_random.Next(4) == 0)
            {
                first = _random.Next(Pages - 1);
                count = 2 + _random.Next(Math.Min(24, Pages - first) - 1);
            }
            Advice advice = Advices[_random.Next(Advices.Length)];
            _script.Advise(proc, Address(first), (ulong)count * Page, advice);
            if (advice is Advice.DontFork or Advice.DoFork)
            {
                // The walk skips holes and advises every VMA in the range (then answers ENOMEM).
                for (int page = first; page < first + count; page++)
                {
                    _dontFork[proc][page] = advice == Advice.DontFork && _mapped[proc][page];
                }
            }
        }

        public void Fork(int proc)
        {
            if (_script.Processes >= MaxProcesses)
            {
                return;
            }
            int child = _script.Processes;
            _script.Fork(proc);
            _mapped[child] = _mapped[proc].Zip(_dontFork[proc], (mapped, dontFork) => mapped && !dontFork).ToArray();
            _dontFork[child] = new bool[Pages];
        }

        public void Report()
        {
            var samples = new ulong[_random.Next(3, 7)];
            for (int i = 0; i < samples.Length; i++)
            {
                samples[i] = RandomAddress();
            }
            _script.Report(samples);
        }

        // A range wholly mapped in the process: a random one shrunk to its first mapped run.
        private void ProtectRandom(int proc)
        {
            (int first, int count) = RandomRange();
            bool[] mapped = _mapped[proc];
            while (count > 0 && !mapped[first])
            {
                first++;
                count--;
            }
            int run = 0;
            while (run < count && mapped[first + run])
            {
                run++;
            }
            if (run == 0)
            {
                Read(proc);
                return;
            }
            _script.Protect(proc, Address(first), (ulong)run * Page, Prots[_random.Next(Prots.Length)]);
        }

        private (int First, int Count) RandomRange()
        {
            int first = _hot.Count > 0 && _random.Next(3) != 0 ? _hot[_random.Next(_hot.Count)] : _random.Next(Pages);
            return (first, 1 + _random.Next(Math.Min(8, Pages - first)));
        }

        // Half from touched pages, most of the rest from mapped ones.
        private ulong RandomAddress()
        {
            int roll = _random.Next(10);
            int page = roll < 5 && _touched.Count > 0 ? _touched[_random.Next(_touched.Count)]
                : roll < 9 && _hot.Count > 0 ? _hot[_random.Next(_hot.Count)]
                : _random.Next(Pages);
            return Address(page) + (ulong)_random.Next((int)Page);
        }

        private ulong Touch(ulong address)
        {
            _touched.Add((int)((address - _script.RegionStart) / Page));
            return address;
        }

        private ulong Address(int page) => _script.RegionStart + ((ulong)page * Page);
    }
}
