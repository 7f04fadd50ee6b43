using System.Globalization;

namespace Faultline.Cli.Replay;

/// <summary>
/// Replays one traced memory call on an <see cref="AddressSpace"/> and compares the result with the kernel's. A file
/// mapping becomes anonymous memory of the same address, length, protection and flags (Faultline has no files), so
/// that placement and every later call on it behave as on the kernel; a file error the stand-in cannot reproduce, a
/// call Faultline has no counterpart for, and a call whose kernel result is unknown are unmodelled, not replayed.
/// </summary>
/// <remarks>Thread-safe as the address space is: the class holds no state.</remarks>
internal static class CallReplay
{
    /// <summary>The memory calls Faultline models, by strace's names.</summary>
    public static readonly IReadOnlySet<string> Modelled = new HashSet<string>(StringComparer.Ordinal)
    {
        "mmap", "munmap", "mprotect", "pkey_mprotect", "mremap", "madvise", "brk", "mincore", "msync", "mlock", "mlock2",
        "munlock", "mlockall", "munlockall", "mseal",
    };

    // Errors of a file mapping that come from the file, not the address space: anonymous memory cannot reproduce them.
    private static readonly HashSet<string> FileErrors = ["EBADF", "EACCES", "ENODEV", "ETXTBSY", "EAGAIN", "EOVERFLOW"];

    /// <summary>The kernel's result of <paramref name="call"/> as text.</summary>
    public static string KernelResult(TraceCall call) => call.Errno is null ? call.Result : $"-1 {call.Errno}";

    /// <summary>
    /// The file systems whose files Linux places like transparent huge pages (their <c>get_unmapped_area</c> is
    /// <c>thp_get_unmapped_area</c>): a file mapping there whose file range holds a whole aligned PMD is placed so that
    /// the PMD is aligned in memory too.
    /// </summary>
    public static readonly IReadOnlySet<string> ThpAlignedFileSystems = new HashSet<string>(StringComparer.Ordinal) { "ext4", "xfs" };

    /// <summary>
    /// Replays <paramref name="call"/> on <paramref name="space"/>; <paramref name="fileSystems"/> names the file system
    /// of each mapped file (a stand-in is placed as a file there would be).
    /// </summary>
    public static CallOutcome Execute(AddressSpace space, TraceCall call, IReadOnlyDictionary<string, string> fileSystems)
    {
        string kernel = KernelResult(call);
        if (!Modelled.Contains(call.Name))
        {
            return new CallOutcome(OutcomeKind.Unmodelled, kernel, "", "Faultline has no such call");
        }
        if (call.ResultUnknown)
        {
            return new CallOutcome(OutcomeKind.Unmodelled, kernel, "", "the kernel's result is unknown (the thread died in the call)");
        }
        ulong[] a;
        try
        {
            a = call.Args.Select(ArgumentText.Value).ToArray();
        }
        catch (FormatException e)
        {
            return new CallOutcome(OutcomeKind.Unmodelled, kernel, "", $"arguments not understood: {e.Message}");
        }
        return call.Name switch
        {
            "mmap" => Mmap(space, call, a, kernel, fileSystems),
            "brk" => Compare(kernel, Hex(space.Brk(Arg(a, 0)))),
            "munmap" => Status(kernel, space.TryUnmap(Arg(a, 0), Arg(a, 1))),
            "mprotect" => Status(kernel, space.TryProtect(Arg(a, 0), Arg(a, 1), (Protection)Arg(a, 2))),
            // Key -1 is the default key: pkey_mprotect is then mprotect.
            "pkey_mprotect" when (long)Arg(a, 3) == -1 => Status(kernel, space.TryProtect(Arg(a, 0), Arg(a, 1), (Protection)Arg(a, 2))),
            "pkey_mprotect" => new CallOutcome(OutcomeKind.Unmodelled, kernel, "", "protection keys are not modelled"),
            "mremap" => Mremap(space, a, kernel),
            "madvise" => Status(kernel, space.TryAdvise(Arg(a, 0), Arg(a, 1), (Advice)(int)Arg(a, 2))),
            "mincore" => Mincore(space, a, kernel),
            "msync" => Status(kernel, space.Msync(Arg(a, 0), Arg(a, 1), (SyncFlags)(int)Arg(a, 2))),
            "mlock" => Status(kernel, space.Lock(Arg(a, 0), Arg(a, 1))),
            "mlock2" => Status(kernel, space.Lock(Arg(a, 0), Arg(a, 1), (MemoryLockFlags)(int)Arg(a, 2))),
            "munlock" => Status(kernel, space.Unlock(Arg(a, 0), Arg(a, 1))),
            "mlockall" => Status(kernel, space.LockAll((LockAllFlags)(int)Arg(a, 0))),
            "munlockall" => Status(kernel, space.UnlockAll()),
            _ => Status(kernel, space.Seal(Arg(a, 0), Arg(a, 1), Arg(a, 2))),
        };
    }

    private static CallOutcome Mmap(AddressSpace space, TraceCall call, ulong[] a, string kernel, IReadOnlyDictionary<string, string> fileSystems)
    {
        var flags = (MapFlags)Arg(a, 3);
        bool standIn = (flags & MapFlags.Anonymous) == 0;
        if (standIn && call.Errno is { } errno && FileErrors.Contains(errno))
        {
            return new CallOutcome(OutcomeKind.Unmodelled, kernel, "", $"{errno} comes from the file, which an anonymous stand-in cannot reproduce", true);
        }
        ulong address = Arg(a, 0);
        if (standIn && (flags & (MapFlags.Fixed | MapFlags.FixedNoReplace)) == 0 && call.File is { } file
            && fileSystems.TryGetValue(file, out string? type) && ThpAlignedFileSystems.Contains(type)
            && ThpAlignedFileStart(space, address, PageGeometry.PageAlign(Arg(a, 1)), Arg(a, 5)) is ulong start)
        {
            address = start;
            flags |= MapFlags.Fixed;
        }
        Errno error = space.TryMap(address, Arg(a, 1), (Protection)Arg(a, 2), flags | MapFlags.Anonymous, out ulong mapped);
        return Compare(kernel, error == Errno.None ? Hex(mapped) : $"-1 {error}") with { StandIn = standIn };
    }

    // __thp_get_unmapped_area for a file range [offset, offset + length): when it holds a whole aligned PMD, search
    // for a PMD more (a probe mapping, removed again, finds what get_unmapped_area would) and move the start so that
    // the file's PMD boundaries fall on memory's; a start already aligned moves up a PMD (top-down). Null: place as usual.
    private static ulong? ThpAlignedFileStart(AddressSpace space, ulong hint, ulong length, ulong offset)
    {
        const ulong pmd = PageGeometry.PmdSize;
        ulong alignedOffset = (offset + pmd - 1) & ~(pmd - 1);
        ulong end = offset + length;
        if (end <= alignedOffset || end - alignedOffset < pmd || length + pmd < length)
        {
            return null;
        }
        // Shared anonymous: placed by the plain search (no THP alignment of its own), as the padded search must be.
        if (space.TryMap(hint, length + pmd, Protection.None, MapFlags.Shared | MapFlags.Anonymous | MapFlags.NoReserve, out ulong found) != Errno.None)
        {
            return null;
        }
        space.Unmap(found, length + pmd);
        if (found == hint)
        {
            return hint;
        }
        ulong misalignment = (offset - found) & (pmd - 1);
        return misalignment == 0 ? found + pmd : found + misalignment;
    }

    private static CallOutcome Mremap(AddressSpace space, ulong[] a, string kernel)
    {
        Errno error = space.TryRemap(Arg(a, 0), Arg(a, 1), Arg(a, 2), (RemapFlags)(int)Arg(a, 3), Arg(a, 4), out ulong moved);
        return Compare(kernel, error == Errno.None ? Hex(moved) : $"-1 {error}");
    }

    private static CallOutcome Mincore(AddressSpace space, ulong[] a, string kernel)
    {
        ulong pages = (Arg(a, 1) + PageGeometry.PageSize - 1) / PageGeometry.PageSize;
        if (pages > 1 << 24)
        {
            return new CallOutcome(OutcomeKind.Unmodelled, kernel, "", "a residency vector over 64 GiB is not replayed");
        }
        // Only the status is compared: which pages are resident differs (file pages were cached, stand-ins are not).
        return Status(kernel, space.Mincore(Arg(a, 0), Arg(a, 1), new byte[pages]));
    }

    private static CallOutcome Status(string kernel, Errno error) => Compare(kernel, error == Errno.None ? "0" : $"-1 {error}");

    private static CallOutcome Compare(string kernel, string faultline) =>
        new(Same(kernel, faultline) ? OutcomeKind.Equal : OutcomeKind.Different, kernel, faultline);

    // Numbers compare by value (strace prints 0 and 0x0 alike); errors by name.
    private static bool Same(string kernel, string faultline)
    {
        if (kernel == faultline)
        {
            return true;
        }
        try
        {
            return !kernel.StartsWith('-') && !faultline.StartsWith('-') && ArgumentText.Value(kernel) == ArgumentText.Value(faultline);
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static string Hex(ulong value) => "0x" + value.ToString("x", CultureInfo.InvariantCulture);

    private static ulong Arg(ulong[] a, int index) => index < a.Length ? a[index] : 0;
}
