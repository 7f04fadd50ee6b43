using System.Text;
using Faultline.Host;

namespace Faultline.Tests.Conformance;

/// <summary>
/// One host region and one Faultline address space at the same addresses, driven by the same operations; compares
/// the maps lines, access outcomes, data and residency of the region after each step. Faultline maps the zero page on
/// a read fault exactly when the host does (<see cref="HostFacts.ReadFaultMapsZeroPage"/>), so residency and Rss are
/// compared exactly on either kind of host.
/// </summary>
internal sealed class MirroredSpace : IDisposable
{
    public const ulong Page = 4096;

    private readonly HostRegion _host;
    private readonly StringBuilder _log = new();
    private readonly Cpu? _idleUser;
    private ulong _hostBrk;

    /// <param name="host">The region, reset to one PROT_NONE reservation on both sides.</param>
    /// <param name="path">Faultline's fault path.</param>
    /// <param name="mapZeroPageOnRead">Overrides the probed host setting (to show a mismatch is detected).</param>
    /// <param name="brkStart">
    /// Where Faultline's heap starts (page-aligned, inside the region; default: the region's end, no heap). The
    /// region from there to its end is left unmapped on both sides for the break to grow into.
    /// </param>
    /// <param name="softDirty">Faultline's soft-dirty tracking (default off, whatever the host has).</param>
    public MirroredSpace(HostRegion host, FaultPath path = FaultPath.MmapLock, bool? mapZeroPageOnRead = null, ulong? brkStart = null,
        bool softDirty = false)
    {
        _host = host;
        BrkStart = brkStart ?? host.End;
        _hostBrk = BrkStart;
        Space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path,
            PhysicalMemoryBytes = 32 << 20,
            MapZeroPageOnRead = mapZeroPageOnRead ?? HostFacts.Current.ReadFaultMapsZeroPage,
            // Locking is compared as the host allows it: its capability and limit.
            CapIpcLock = HostFacts.Current.HasCapIpcLock,
            MemoryLockLimit = HostFacts.Current.MemoryLockLimit,
            BrkStart = BrkStart,
            // A read fault on shared memory maps as many cached pages around it as the host's does.
            FaultAroundBytes = HostFacts.Current.FaultAroundPages * (int)Page,
            SoftDirty = softDirty,
        });
        Cpu = Space.AttachCpu();
        // The speculative path runs only with more than one user (mm_users > 1); a second, idle Cpu makes it run.
        _idleUser = path == FaultPath.Speculative ? Space.AttachCpu() : null;
        int hostReset = _host.Map(_host.Start, _host.Size, Linux.PROT_NONE, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED | Linux.MAP_NORESERVE);
        Errno ours = Space.TryMap(_host.Start, _host.Size, Protection.None, MapFlags.PrivateAnonymous | MapFlags.Fixed | MapFlags.NoReserve, out _);
        if (hostReset != 0 || ours != Errno.None)
        {
            throw new InvalidOperationException($"reset failed: host {hostReset}, faultline {ours}");
        }
        if (BrkStart < _host.End && (_host.Unmap(BrkStart, _host.End - BrkStart) != 0 || Space.TryUnmap(BrkStart, _host.End - BrkStart) != Errno.None))
        {
            throw new InvalidOperationException("reset failed: the heap's room");
        }
        Log($"reset: PROT_NONE MAP_NORESERVE reservation, heap from 0x{BrkStart:x}");
    }

    /// <summary>Faultline's <c>start_brk</c>.</summary>
    public ulong BrkStart { get; }

    /// <summary>The line a conformance test logs: which read-fault mode the host is in and that Faultline matches it.</summary>
    public static string HostMode =>
        $"host: read faults map the zero page: {(HostFacts.Current.ReadFaultMapsZeroPage ? "yes" : "no (private zeroed pages)")}; Faultline configured to match";

    public AddressSpace Space { get; }
    /// <summary>mremap calls made through <see cref="Remap"/>, and those that succeeded on both sides.</summary>
    public int RemapCalls { get; private set; }
    public int RemapsSucceeded { get; private set; }
    public Cpu Cpu { get; }
    public ulong Start => _host.Start;
    public ulong End => _host.End;
    public string History => _log.ToString();

    public void Log(string line) => _log.AppendLine(line);

    public (int Host, int Ours) Map(ulong address, ulong length, int prot, int flags)
    {
        int host = _host.Map(address, length, prot, flags);
        int ours = (int)Space.TryMap(address, length, (Protection)prot, (MapFlags)flags, out _);
        Log($"mmap(0x{address:x}, 0x{length:x}, prot {prot:x}, flags {flags:x}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Unmap(ulong address, ulong length)
    {
        int host = _host.Unmap(address, length);
        int ours = (int)Space.TryUnmap(address, length);
        Log($"munmap(0x{address:x}, 0x{length:x}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Protect(ulong address, ulong length, int prot)
    {
        int host = _host.Protect(address, length, prot);
        int ours = (int)Space.TryProtect(address, length, (Protection)prot);
        Log($"mprotect(0x{address:x}, 0x{length:x}, prot {prot:x}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Advise(ulong address, ulong length, int advice)
    {
        int host = _host.Advise(address, length, advice);
        int ours = (int)Space.TryAdvise(address, length, (Advice)advice);
        Log($"madvise(0x{address:x}, 0x{length:x}, {advice}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Lock(ulong address, ulong length, uint flags)
    {
        int host = _host.Lock(address, length, flags);
        int ours = (int)Space.Lock(address, length, (MemoryLockFlags)flags);
        Log($"mlock2(0x{address:x}, 0x{length:x}, {flags}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Unlock(ulong address, ulong length)
    {
        int host = _host.Unlock(address, length);
        int ours = (int)Space.Unlock(address, length);
        Log($"munlock(0x{address:x}, 0x{length:x}) = host {host}, ours {ours}");
        return (host, ours);
    }

    public (int Host, int Ours) Seal(ulong address, ulong length)
    {
        int host = _host.Seal(address, length);
        int ours = (int)Space.Seal(address, length);
        Log($"mseal(0x{address:x}, 0x{length:x}) = host {host}, ours {ours}");
        return (host, ours);
    }

    /// <summary>
    /// mremap on both sides; returns a difference or null. The errno must agree, and so must the result when either
    /// side's lies in the region; a mapping moved out of the region (a MREMAP_MAYMOVE growth, a MREMAP_DONTUNMAP hint
    /// that was taken) is placed by each side's own search and is unmapped on both sides, as the host region does.
    /// </summary>
    public string? Remap(ulong oldAddress, ulong oldLength, ulong newLength, int flags, ulong newAddress)
    {
        RemapCalls++;
        int host = _host.Remap(oldAddress, oldLength, newLength, flags, newAddress, out ulong hostResult);
        int ours = (int)Space.TryRemap(oldAddress, oldLength, newLength, (RemapFlags)flags, newAddress, out ulong ourResult);
        Log($"mremap(0x{oldAddress:x}, 0x{oldLength:x}, 0x{newLength:x}, {flags}, 0x{newAddress:x}) = host {host} (0x{hostResult:x}), ours {ours} (0x{ourResult:x})");
        if (host != ours)
        {
            return $"errno differs: host {host}, ours {ours}";
        }
        if (host != 0)
        {
            return null;
        }
        RemapsSucceeded++;
        bool hostInside = _host.Contains(hostResult, PageAlign(newLength));
        bool oursInside = _host.Contains(ourResult, PageAlign(newLength));
        if (!oursInside)
        {
            Space.Unmap(ourResult, PageAlign(newLength));
        }
        return hostInside || oursInside
            ? hostResult == ourResult ? null : $"mremap result differs: host 0x{hostResult:x}, ours 0x{ourResult:x}"
            : null;
    }

    public (int Host, int Ours) Msync(ulong address, ulong length, int flags)
    {
        int host = _host.Msync(address, length, flags);
        int ours = (int)Space.Msync(address, length, (SyncFlags)flags);
        Log($"msync(0x{address:x}, 0x{length:x}, {flags}) = host {host}, ours {ours}");
        return (host, ours);
    }

    /// <summary>mincore on both sides; a difference in errno or in any byte of the result, or null.</summary>
    public string? Mincore(ulong address, ulong length)
    {
        int pages = (int)((length + Page - 1) / Page);
        var host = new byte[pages];
        var ours = new byte[pages];
        int hostErrno = _host.Mincore(address, length, host);
        int ourErrno = (int)Space.Mincore(address, length, ours);
        Log($"mincore(0x{address:x}, 0x{length:x}) = host {hostErrno} [{string.Concat(host)}], ours {ourErrno} [{string.Concat(ours)}]");
        if (hostErrno != ourErrno)
        {
            return $"mincore errno differs: host {hostErrno}, ours {ourErrno}";
        }
        // mincore fills the bytes of the VMAs before a hole before failing; only a success promises every byte.
        return hostErrno == 0 && !host.AsSpan().SequenceEqual(ours) ? $"mincore differs: host [{string.Concat(host)}], ours [{string.Concat(ours)}]" : null;
    }

    /// <summary>
    /// <c>brk</c>: Faultline's against the host kernel's mappings. The host's own break is this process's heap
    /// (glibc's malloc), so the host side applies the kernel's brk rules (SYSCALL_DEFINE1(brk): shrink only over
    /// something mapped, grow only with a free page above and nothing in the way) to its maps of the region and makes
    /// the change with munmap or a MAP_FIXED_NOREPLACE mmap; the kernel then merges (or not) the new range as it does
    /// a brk's, since the page below the heap's start is never mapped. Returns a difference in the resulting break,
    /// or null.
    /// </summary>
    public string? Brk(ulong requested)
    {
        ulong original = _hostBrk;
        ulong oldBreak = PageAlign(original), newBreak = PageAlign(requested);
        if (requested >= BrkStart)
        {
            if (oldBreak == newBreak)
            {
                _hostBrk = requested;
            }
            else if (requested <= original)
            {
                if (_host.ReadMaps().Any(l => l.End > newBreak && l.Start < oldBreak) && _host.Unmap(newBreak, oldBreak - newBreak) == 0)
                {
                    _hostBrk = requested;
                }
            }
            else if (!_host.ReadMaps().Any(l => l.End > oldBreak && l.Start < newBreak + Page)
                && _host.Map(oldBreak, newBreak - oldBreak, Linux.PROT_READ | Linux.PROT_WRITE, Linux.MAP_PRIVATE | Linux.MAP_ANONYMOUS | Linux.MAP_FIXED_NOREPLACE) == 0)
            {
                _hostBrk = requested;
            }
        }
        ulong ours = Space.Brk(requested);
        Log($"brk(0x{requested:x}) = host 0x{_hostBrk:x}, ours 0x{ours:x}");
        return ours == _hostBrk ? null : $"brk differs: host 0x{_hostBrk:x}, ours 0x{ours:x}";
    }

    private static ulong PageAlign(ulong value) => (value + Page - 1) & ~(Page - 1);

    /// <summary>Reads a byte on both sides (process_vm_readv on the host); returns a difference or null.</summary>
    public string? Touch(ulong address, bool write, byte value)
    {
        int hostRead = HostProbe.ReadErrno(address, out byte hostByte);
        AccessOutcome ourRead = Cpu.TryLoad(address, out byte ourByte);
        Log($"touch 0x{address:x} {(write ? $"write {value}" : "read")}: host read {hostRead} ({hostByte}), ours {ourRead} ({ourByte})");
        if ((hostRead == 0) != (ourRead == AccessOutcome.Ok))
        {
            return $"read of 0x{address:x}: host errno {hostRead}, ours {ourRead}";
        }
        if (hostRead == 0 && hostByte != ourByte)
        {
            return $"data at 0x{address:x}: host {hostByte}, ours {ourByte}";
        }
        if (hostRead != 0)
        {
            // process_vm_readv fails with EFAULT either way: in a readable host mapping the page could not be faulted
            // in (shared memory past its object's size), which a load takes as SIGBUS; elsewhere it is a SIGSEGV.
            bool readable = _host.ReadMaps().Any(l => l.Start <= address && address < l.End && l.Perms[0] == 'r');
            if (readable && ourRead != AccessOutcome.BusError)
            {
                return $"read of 0x{address:x}: ours {ourRead}, expected a SIGBUS";
            }
            if (!readable && ourRead != AccessOutcome.SegvAccErr && ourRead != AccessOutcome.SegvMapErr)
            {
                return $"read of 0x{address:x}: ours {ourRead}, expected a SIGSEGV";
            }
        }
        if (!write)
        {
            return null;
        }
        int hostWrite = HostProbe.WriteErrno(address, value);
        AccessOutcome ourWrite = Cpu.TryStore(address, value);
        Log($"  write: host {hostWrite}, ours {ourWrite}");
        if ((hostWrite == 0) != (ourWrite == AccessOutcome.Ok))
        {
            return $"write of 0x{address:x}: host errno {hostWrite}, ours {ourWrite}";
        }
        return null;
    }

    /// <summary>The maps lines of the region, host and ours, as text; null when equal.</summary>
    public string? CompareMaps()
    {
        string host = string.Join("\n", _host.ReadMaps().Select(l => $"{l.Start:x}-{l.End:x} {l.Perms}"));
        string ours = string.Join("\n", Space.GetMappings()
            .Where(m => m.End > Start && m.Start < End)
            .Select(m => $"{Math.Max(m.Start, Start):x}-{Math.Min(m.End, End):x} {m.Permissions}"));
        return host == ours ? null : $"maps differ\nhost:\n{host}\nours:\n{ours}";
    }

    /// <summary>The pagemap present bit of every page against ours; null when equal.</summary>
    public string? CompareResidency()
    {
        int pages = (int)((End - Start) / Page);
        var entries = new ulong[pages];
        HostPagemap.ReadEntries(Start, entries);
        for (int i = 0; i < pages; i++)
        {
            bool host = (entries[i] & HostPagemap.PM_PRESENT) != 0;
            bool ours = Space.IsResident(Start + (ulong)i * Page);
            if (host != ours)
            {
                return $"residency of page 0x{Start + (ulong)i * Page:x}: host {host}, ours {ours}";
            }
        }
        return null;
    }

    /// <summary>
    /// smaps Rss, Anonymous, Private_Dirty, Locked and VmFlags of each VMA of the region, the host's against ours (one
    /// parser reads both texts); null when equal. LazyFree is not compared: the kernel marks a folio lazily freeable
    /// when its CPU's LRU batch drains (<c>folio_mark_lazyfree</c>), which smaps does not force, so the host's figure
    /// depends on batching.
    /// </summary>
    public string? CompareSmaps()
    {
        List<SmapsEntry> host = HostSmaps.ReadRegion(Start, End);
        List<SmapsEntry> ours = HostSmaps.Parse(Encoding.ASCII.GetBytes(Space.GetSmaps()), Start, End);
        if (host.Count != ours.Count)
        {
            return $"smaps: host {host.Count} VMAs, ours {ours.Count}";
        }
        foreach ((SmapsEntry h, SmapsEntry o) in host.Zip(ours))
        {
            string range = $"{Math.Max(h.Start, Start):x}-{Math.Min(h.End, End):x}";
            if ((Math.Max(h.Start, Start), Math.Min(h.End, End)) != (Math.Max(o.Start, Start), Math.Min(o.End, End)))
            {
                return $"smaps: host VMA {range}, ours {o.Start:x}-{o.End:x}";
            }
            if (h.RssKb != o.RssKb)
            {
                return $"Rss of {range}: host {h.RssKb} kB, ours {o.RssKb} kB";
            }
            if (h.AnonymousKb != o.AnonymousKb)
            {
                return $"Anonymous of {range}: host {h.AnonymousKb} kB, ours {o.AnonymousKb} kB";
            }
            if (h.PrivateDirtyKb != o.PrivateDirtyKb)
            {
                return $"Private_Dirty of {range}: host {h.PrivateDirtyKb} kB, ours {o.PrivateDirtyKb} kB";
            }
            if (h.LockedKb != o.LockedKb)
            {
                return $"Locked of {range}: host {h.LockedKb} kB, ours {o.LockedKb} kB";
            }
            if (h.VmFlags != o.VmFlags)
            {
                return $"VmFlags of {range}: host {h.VmFlags}, ours {o.VmFlags}";
            }
        }
        return null;
    }

    public void Dispose()
    {
        _idleUser?.Dispose();
        Cpu.Dispose();
        Space.Dispose();
    }
}
