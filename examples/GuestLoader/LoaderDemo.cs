namespace Faultline.Examples.GuestLoader;

/// <summary>
/// The demonstration: load an ELF on demand through a user-fault channel, print through an MMIO UART, and snapshot
/// and restore the writable segments with the dirty log, checking each step against the file.
/// </summary>
public static class LoaderDemo
{
    /// <summary>Where the UART's page is mapped (QEMU's <c>virt</c> machine puts its UART near here too).</summary>
    public const ulong UartAddress = 0x1000_0000;

    /// <summary>Pages of heap the program grows with brk before the snapshot.</summary>
    public const ulong HeapPages = 64;

    /// <summary>Runs the demonstration on the ELF at <paramref name="path"/>, narrating to <paramref name="output"/>.</summary>
    public static LoaderReport Run(string path, TextWriter output, FaultPath faultPath = FaultPath.VmaLock)
    {
        ElfImage image = ElfImage.Load(path);
        long imagePages = image.Segments.Sum(s => (long)((s.PageEnd - s.PageStart) / PageGeometry.PageSize));
        output.WriteLine($"{path}: {image.Segments.Count} loadable segments, {imagePages} pages, entry 0x{image.Entry:x}");

        // The heap starts right after the image, as load_elf_binary sets mm->start_brk with randomisation off.
        ulong imageEnd = image.Segments.Max(s => s.PageEnd);
        using var space = new AddressSpace(new FaultlineOptions { FaultPath = faultPath, BrkStart = imageEnd });
        using var loader = new DemandLoader(space, image);
        var uart = new Uart(output);
        space.MapDevice(UartAddress, PageGeometry.PageSize, Protection.ReadWrite, MapFlags.Shared | MapFlags.Fixed, uart, "uart16550");
        using Cpu cpu = space.AttachCpu();
        var trace = new TraceCpu(cpu);

        // 1. An instruction fetch at the entry point: the text page is filled by the user-fault handler.
        Span<byte> fetched = stackalloc byte[16];
        trace.FetchInstructions(image.Entry, fetched);
        Span<byte> expected = stackalloc byte[16];
        ReadFile(image, image.Entry, expected);
        bool entryMatches = fetched.SequenceEqual(expected);
        output.WriteLine($"fetched at the entry point: {Convert.ToHexString(fetched)} ({(entryMatches ? "as in the file" : "DIFFERENT from the file")})");

        // 2. Print a string of the image through the UART: the interpreter's path, or the ELF magic's "ELF".
        ulong text = image.InterpreterAddress != 0 ? image.InterpreterAddress : image.Segments[0].Address + 1;
        int limit = image.InterpreterAddress != 0 ? 4096 : 3;
        trace.PrintString(text, UartAddress, limit);
        string expectedText = ReadString(image, text, limit);
        bool uartMatches = uart.Lines.Count == 1 && uart.Lines[0] == expectedText;

        // 3. Snapshot the writable segments, let the program write three of their pages, restore from the dirty log.
        (int written, long restored, bool restoreMatches) = SnapshotAndRestore(space, cpu, trace, image, output);

        output.WriteLine($"demand loading: {loader.PagesLoaded} of {imagePages} pages filled from the file on first touch");
        if (loader.Error is not null)
        {
            output.WriteLine($"the user-fault handler stopped: {loader.Error.Message}");
        }
        return new LoaderReport(imagePages, loader.PagesLoaded, entryMatches, uart.Lines, uartMatches, written, restored, restoreMatches);
    }

    private static (int Written, long Restored, bool Matches) SnapshotAndRestore(AddressSpace space, Cpu cpu, TraceCpu trace,
        ElfImage image, TextWriter output)
    {
        // The program's writable memory: its last writable segment (.data and .bss) and a heap grown with brk, as a
        // C runtime would at start-up.
        var ranges = new List<(ulong Start, ulong Length)>();
        ElfSegment[] writable = image.Segments.Where(s => (s.Protection & Protection.Write) != 0).ToArray();
        if (writable.Length > 0)
        {
            ranges.Add((writable[^1].PageStart, writable[^1].PageEnd - writable[^1].PageStart));
        }
        ulong heap = space.Brk(0);
        space.Brk(heap + HeapPages * PageGeometry.PageSize);
        ranges.Add((heap, HeapPages * PageGeometry.PageSize));

        // The snapshot reads every page (filling the segment's through the handler), then arms the dirty log.
        var snapshots = new List<byte[]>();
        foreach ((ulong start, ulong length) in ranges)
        {
            byte[] snapshot = new byte[length];
            cpu.Read(start, snapshot);
            snapshots.Add(snapshot);
            space.GetAndClearDirtyLog(start, length, new ulong[BitmapWords(length)]);
        }

        // The program runs: it writes a word in the first data page and in three heap pages.
        var targets = new HashSet<ulong> { ranges[0].Start, heap + 3 * PageGeometry.PageSize, heap + 17 * PageGeometry.PageSize, heap + 42 * PageGeometry.PageSize };
        foreach (ulong page in targets)
        {
            trace.Store(page + 8, 0xFA17_11E0_0000_0000UL | page);
        }

        // Restore: only the pages the dirty log reports are copied back; then re-arm, since the restore wrote them.
        long dirty = 0;
        long restored = 0;
        bool matches = true;
        long pages = 0;
        for (int r = 0; r < ranges.Count; r++)
        {
            (ulong start, ulong length) = ranges[r];
            var bitmap = new ulong[BitmapWords(length)];
            dirty += space.GetAndClearDirtyLog(start, length, bitmap);
            int rangePages = (int)(length / PageGeometry.PageSize);
            pages += rangePages;
            for (int i = 0; i < rangePages; i++)
            {
                if ((bitmap[i / 64] & (1UL << (i % 64))) != 0)
                {
                    cpu.Write(start + (ulong)i * PageGeometry.PageSize, snapshots[r].AsSpan(i * PageGeometry.PageSize, PageGeometry.PageSize));
                    restored++;
                }
            }
            space.GetAndClearDirtyLog(start, length, bitmap);
            byte[] after = new byte[length];
            cpu.Read(start, after);
            matches &= after.AsSpan().SequenceEqual(snapshots[r]);
        }
        output.WriteLine($"snapshot of {pages} writable pages (data segment and heap): {targets.Count} written, {dirty} reported dirty, "
            + $"{restored} restored, {(matches ? "memory equals the snapshot" : "memory DIFFERS from the snapshot")}");
        return (targets.Count, restored, matches);
    }

    private static int BitmapWords(ulong length) => (int)((length / PageGeometry.PageSize + 63) / 64);

    // The NUL-terminated string the file holds at a guest address, at most `limit` bytes.
    private static string ReadString(ElfImage image, ulong address, int limit)
    {
        byte[] bytes = new byte[limit];
        ReadFile(image, address, bytes);
        int end = Array.IndexOf(bytes, (byte)0);
        return System.Text.Encoding.Latin1.GetString(bytes, 0, end < 0 ? limit : end);
    }

    // The file's bytes at a guest address, through the segment that holds it (zeros beyond its file size).
    private static void ReadFile(ElfImage image, ulong address, Span<byte> destination)
    {
        byte[] page = new byte[PageGeometry.PageSize];
        ulong filled = ulong.MaxValue;
        for (int i = 0; i < destination.Length; i++)
        {
            ulong at = address + (ulong)i;
            if ((at & ~PageGeometry.PageOffsetMask) != filled)
            {
                filled = at & ~PageGeometry.PageOffsetMask;
                image.FillPage(filled, page);
            }
            destination[i] = page[(int)(at & PageGeometry.PageOffsetMask)];
        }
    }
}
