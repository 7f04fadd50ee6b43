using System.Text;

namespace Faultline;

/// <summary>System-call arguments and errno values as strace prints them (<c>PROT_READ|PROT_WRITE</c>, <c>EINVAL (Invalid argument)</c>).</summary>
internal static class SyscallText
{
    private static readonly (int Bit, string Name)[] s_protections =
    [
        ((int)Faultline.Protection.Read, "PROT_READ"), ((int)Faultline.Protection.Write, "PROT_WRITE"),
        ((int)Faultline.Protection.Execute, "PROT_EXEC"), ((int)Faultline.Protection.Semaphore, "PROT_SEM"),
        ((int)Faultline.Protection.GrowsDown, "PROT_GROWSDOWN"), ((int)Faultline.Protection.GrowsUp, "PROT_GROWSUP"),
    ];

    // The bits after the two-bit mapping type (MAP_SHARED, MAP_PRIVATE, MAP_SHARED_VALIDATE).
    private static readonly (int Bit, string Name)[] s_mapFlags =
    [
        ((int)MapFlags.Fixed, "MAP_FIXED"), ((int)MapFlags.Anonymous, "MAP_ANONYMOUS"), ((int)MapFlags.GrowsDown, "MAP_GROWSDOWN"),
        ((int)MapFlags.DenyWrite, "MAP_DENYWRITE"), ((int)MapFlags.Executable, "MAP_EXECUTABLE"), ((int)MapFlags.Locked, "MAP_LOCKED"),
        ((int)MapFlags.NoReserve, "MAP_NORESERVE"), ((int)MapFlags.Populate, "MAP_POPULATE"), ((int)MapFlags.NonBlock, "MAP_NONBLOCK"),
        ((int)MapFlags.Stack, "MAP_STACK"), ((int)MapFlags.HugeTlb, "MAP_HUGETLB"), ((int)MapFlags.Sync, "MAP_SYNC"),
        ((int)MapFlags.FixedNoReplace, "MAP_FIXED_NOREPLACE"),
    ];

    private static readonly (int Bit, string Name)[] s_remapFlags =
    [
        ((int)RemapFlags.MayMove, "MREMAP_MAYMOVE"), ((int)RemapFlags.Fixed, "MREMAP_FIXED"), ((int)RemapFlags.DontUnmap, "MREMAP_DONTUNMAP"),
    ];

    /// <summary><c>name(0xaddress, length, PROT_…, MAP_…)</c> with the arguments the call has.</summary>
    public static string Call(string operation, ulong? address, ulong? length, Protection? protection, MapFlags? flags)
    {
        var arguments = new List<string>(4);
        if (address is ulong a)
        {
            arguments.Add($"0x{a:x}");
        }
        if (length is ulong l)
        {
            arguments.Add(l.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        if (protection is Protection p)
        {
            arguments.Add(Protection(p));
        }
        if (flags is MapFlags f)
        {
            arguments.Add(Flags(f));
        }
        return $"{operation}({string.Join(", ", arguments)})";
    }

    /// <summary>
    /// <c>mremap(0xaddress, old_length, new_length, MREMAP_…)</c>, with the new address when the flags give one a meaning
    /// (MREMAP_FIXED, MREMAP_DONTUNMAP), as strace prints it.
    /// </summary>
    public static string RemapCall(ulong oldAddress, ulong oldLength, ulong newLength, RemapFlags flags, ulong newAddress)
    {
        string text = FormattableString.Invariant($"mremap(0x{oldAddress:x}, {oldLength}, {newLength}, {RemapFlagNames(flags)}");
        return (flags & (RemapFlags.Fixed | RemapFlags.DontUnmap)) != 0 ? text + $", 0x{newAddress:x})" : text + ")";
    }

    /// <summary><c>MREMAP_MAYMOVE|MREMAP_FIXED</c>, <c>0</c> for none; unknown bits in hex.</summary>
    public static string RemapFlagNames(RemapFlags flags) =>
        flags == RemapFlags.None ? "0" : Bits((int)flags, s_remapFlags, null);

    /// <summary><c>PROT_READ|PROT_WRITE</c>, <c>PROT_NONE</c>; unknown bits in hex.</summary>
    public static string Protection(Protection protection) =>
        protection == Faultline.Protection.None ? "PROT_NONE" : Bits((int)protection, s_protections, null);

    /// <summary><c>MAP_PRIVATE|MAP_ANONYMOUS</c>; unknown bits in hex.</summary>
    public static string Flags(MapFlags flags)
    {
        string? type = ((int)flags & 3) switch
        {
            1 => "MAP_SHARED",
            2 => "MAP_PRIVATE",
            3 => "MAP_SHARED_VALIDATE",
            _ => null,
        };
        return Bits((int)flags & ~3, s_mapFlags, type);
    }

    /// <summary><c>EINVAL (Invalid argument)</c>: the name and strerror's text.</summary>
    public static string Error(Errno error)
    {
        string? text = error switch
        {
            Errno.EPERM => "Operation not permitted",
            Errno.EAGAIN => "Resource temporarily unavailable",
            Errno.EBADF => "Bad file descriptor",
            Errno.ENOMEM => "Cannot allocate memory",
            Errno.EACCES => "Permission denied",
            Errno.EFAULT => "Bad address",
            Errno.EEXIST => "File exists",
            Errno.EINVAL => "Invalid argument",
            Errno.ENOSPC => "No space left on device",
            Errno.EOVERFLOW => "Value too large for defined data type",
            Errno.EOPNOTSUPP => "Operation not supported",
            _ => null,
        };
        return text is null ? error.ToString() : $"{error} ({text})";
    }

    private static string Bits(int value, (int Bit, string Name)[] names, string? first)
    {
        var text = new StringBuilder(first);
        foreach ((int bit, string name) in names)
        {
            if ((value & bit) != 0)
            {
                Append(text, name);
                value &= ~bit;
            }
        }
        if (value != 0 || text.Length == 0)
        {
            Append(text, $"0x{value:x}");
        }
        return text.ToString();
    }

    private static void Append(StringBuilder text, string part)
    {
        if (text.Length > 0)
        {
            text.Append('|');
        }
        text.Append(part);
    }
}
