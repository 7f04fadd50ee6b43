using System.Text;
using Faultline.Areas;
using Faultline.Backing;
using Faultline.Mm;
using Faultline.Paging;

namespace Faultline.Diagnostics;

/// <summary>The text of <c>/proc/pid/maps</c> and <c>/proc/pid/smaps</c> for an address space (<c>show_map_vma</c>).</summary>
internal static class MapsFormatter
{
    // show_vma_header_prefix pads the header to this width before the name.
    private const int NameColumn = 73;

    /// <summary>
    /// The mapping's description; an anonymous VMA overlapping [<paramref name="startBrk"/>, <paramref name="brk"/>) is
    /// named <c>[heap]</c> (<c>vma_is_initial_heap</c>).
    /// </summary>
    public static MappingInfo Describe(Vma vma, ulong startBrk, ulong brk)
    {
        var protection = Protection.None;
        if ((vma.Flags & VmFlags.Read) != 0)
        {
            protection |= Protection.Read;
        }
        if ((vma.Flags & VmFlags.Write) != 0)
        {
            protection |= Protection.Write;
        }
        if ((vma.Flags & VmFlags.Exec) != 0)
        {
            protection |= Protection.Execute;
        }
        ulong offset = vma.Backing.IsAnonymous ? 0 : vma.PageOffset << PageGeometry.PageShift;
        string name = vma.Backing.IsAnonymous && vma.Start < brk && vma.End > startBrk ? "[heap]" : vma.Backing.MapsName;
        var info = new MappingInfo(vma.Start, vma.End, protection, (vma.Flags & VmFlags.MayShare) != 0, offset, name);
        // show_map_vma: a file's device and inode (shared anonymous memory's shmem object).
        return vma.Backing is IPageCacheBacking file ? info with { DeviceMajor = file.DeviceMajor, DeviceMinor = file.DeviceMinor, Inode = file.Inode } : info;
    }

    /// <summary>One maps line, without the newline; anonymous lines end in a space as the kernel's do.</summary>
    public static string Line(MappingInfo m)
    {
        string header = $"{m.Start:x8}-{m.End:x8} {m.Permissions} {m.Offset:x8} {m.DeviceMajor:x2}:{m.DeviceMinor:x2} {m.Inode} ";
        return m.Name.Length == 0 ? header : header.PadRight(NameColumn) + m.Name;
    }

    /// <summary>The whole maps text.</summary>
    public static string Maps(IEnumerable<Vma> vmas, ulong startBrk, ulong brk)
    {
        var text = new StringBuilder();
        foreach (Vma vma in vmas)
        {
            text.Append(Line(Describe(vma, startBrk, brk))).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>The smaps text: each maps line followed by its memory counts; <paramref name="thpMode"/> decides <c>THPeligible</c>.</summary>
    public static string Smaps(IEnumerable<Vma> vmas, ulong startBrk, ulong brk, Func<Vma, ResidentCounts> count,
        TransparentHugePageMode thpMode)
    {
        var text = new StringBuilder();
        foreach (Vma vma in vmas)
        {
            ResidentCounts counts = count(vma);
            long rss = counts.Rss;
            text.Append(Line(Describe(vma, startBrk, brk))).Append('\n');
            Field(text, "Size:", (long)(vma.Length >> 10));
            Field(text, "KernelPageSize:", PageGeometry.PageSize / 1024);
            Field(text, "MMUPageSize:", PageGeometry.PageSize / 1024);
            Field(text, "Rss:", rss * 4);
            Field(text, "Pss:", (counts.ScaledPss >> ResidentCounts.PssShift) >> 10);
            Field(text, "Pss_Dirty:", (counts.ScaledPssDirty >> ResidentCounts.PssShift) >> 10);
            Field(text, "Shared_Clean:", counts.SharedClean * 4);
            Field(text, "Shared_Dirty:", counts.SharedDirty * 4);
            Field(text, "Private_Clean:", counts.PrivateClean * 4);
            Field(text, "Private_Dirty:", counts.PrivateDirty * 4);
            long referenced = counts.Referenced;
            Field(text, "Referenced:", referenced * 4);
            Field(text, "Anonymous:", vma.Backing.IsAnonymous ? rss * 4 : counts.Anonymous * 4);
            Field(text, "LazyFree:", counts.LazyFree * 4);
            Field(text, "AnonHugePages:", counts.AnonHugePages * 4);
            Field(text, "Swap:", counts.Swap * 4);
            Field(text, "SwapPss:", (counts.ScaledSwapPss >> ResidentCounts.PssShift) >> 10);
            // __show_smap prints pss_locked: a locked page mapped twice counts half here, as in Pss.
            Field(text, "Locked:", (vma.Flags & VmFlags.Locked) != 0 ? (counts.ScaledPss >> ResidentCounts.PssShift) >> 10 : 0);
            // Printed "%8u" after the label, as __show_smap does since 6.1 (the 6.18 host's smaps).
            Field(text, "THPeligible:", ThpPolicy.IsSmapsEligible(vma, thpMode) ? 1 : 0, "\n");
            text.Append("VmFlags: ").Append(VmFlagsText(vma.Flags)).Append('\n');
        }
        return text.ToString();
    }

    // SEQ_PUT_DEC: the label in 16 columns, the value right-aligned in 8.
    private static void Field(StringBuilder text, string label, long kb, string unit = " kB\n") =>
        text.Append(label.PadRight(16)).Append(kb.ToString().PadLeft(8)).Append(unit);

    private static string VmFlagsText(VmFlags flags)
    {
        // show_smap_vma_flags: the mnemonics in bit order.
        (VmFlags Flag, string Name)[] names =
        [
            (VmFlags.Read, "rd"), (VmFlags.Write, "wr"), (VmFlags.Exec, "ex"), (VmFlags.Shared, "sh"),
            (VmFlags.MayRead, "mr"), (VmFlags.MayWrite, "mw"), (VmFlags.MayExec, "me"), (VmFlags.MayShare, "ms"),
            (VmFlags.GrowsDown, "gd"), (VmFlags.UserfaultMissing, "um"), (VmFlags.PfnMap, "pf"), (VmFlags.UserfaultWp, "uw"), (VmFlags.Locked, "lo"), (VmFlags.Io, "io"),
            (VmFlags.SequentialRead, "sr"), (VmFlags.RandomRead, "rr"), (VmFlags.DontCopy, "dc"), (VmFlags.DontExpand, "de"),
            (VmFlags.LockOnFault, "lf"), (VmFlags.Account, "ac"), (VmFlags.NoReserve, "nr"), (VmFlags.Sync, "sf"),
            (VmFlags.WipeOnFork, "wf"), (VmFlags.DontDump, "dd"), (VmFlags.SoftDirty, "sd"), (VmFlags.MixedMap, "mm"), (VmFlags.HugePage, "hg"), (VmFlags.NoHugePage, "nh"),
            (VmFlags.UserfaultMinor, "ui"), (VmFlags.Sealed, "sl"),
        ];
        var text = new StringBuilder();
        foreach ((VmFlags flag, string name) in names)
        {
            if ((flags & flag) != 0)
            {
                text.Append(name).Append(' ');
            }
        }
        return text.ToString();
    }
}
