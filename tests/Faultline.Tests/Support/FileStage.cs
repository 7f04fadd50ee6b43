namespace Faultline.Tests.Support;

/// <summary>
/// The stage the file-mapping tests share: an address space on one fault path, a host file whose byte i is
/// <see cref="ByteAt"/>(i), a mapping of it at <see cref="Address"/>, and two Cpus (the second keeps
/// the speculative path in use: one attached Cpu skips it).
/// </summary>
internal sealed class FileStage : IDisposable
{
    /// <summary>Where the file is mapped.</summary>
    public const ulong Base = 0x5000_0000;

    private const int Page = PageGeometry.PageSize;

    private readonly string _path = Path.Combine(Path.GetTempPath(), $"faultline-stage-{Guid.NewGuid():N}");

    /// <summary>
    /// Sets the stage: a file of <paramref name="pages"/> pages (<paramref name="fileBytes"/> bytes when given) mapped
    /// whole (<paramref name="mapPages"/> pages when given); <paramref name="cachePages"/> reads the file into the cache
    /// first, so every path can take its pages without I/O. Fault-around is off unless <paramref name="faultAround"/>.
    /// </summary>
    public FileStage(FaultPath path, int pages, MapFlags type, Protection protection = Protection.ReadWrite,
        bool cachePages = false, bool faultAround = true, int? fileBytes = null, int? mapPages = null)
    {
        Space = new AddressSpace(new FaultlineOptions
        {
            FaultPath = path, PhysicalMemoryBytes = 32 << 20, PoisonFreedFrames = true,
            FaultAroundBytes = faultAround ? 64 << 10 : Page,
        });
        int bytes = fileBytes ?? pages * Page;
        System.IO.File.WriteAllBytes(_path, Contents(bytes));
        File = HostFile.Open(Space, _path, writable: true);
        if (cachePages)
        {
            File.Read(0, new byte[bytes]);
        }
        Address = Space.Map(Base, (ulong)(mapPages ?? pages) * Page, protection, type | MapFlags.Fixed, File, 0);
        Cpu = Space.AttachCpu();
        Idle = Space.AttachCpu();
    }

    public AddressSpace Space { get; }

    public HostFile File { get; }

    public ulong Address { get; }

    public Cpu Cpu { get; }

    public Cpu Idle { get; }

    /// <summary>The host file's path.</summary>
    public string HostPath => _path;

    /// <summary>The host file's bytes now.</summary>
    public byte[] HostBytes => System.IO.File.ReadAllBytes(_path);

    /// <summary>The file's byte at <paramref name="offset"/> as the stage wrote it.</summary>
    public static byte ByteAt(long offset) => (byte)(offset % 251 + 1);

    /// <summary>The first <paramref name="length"/> bytes the stage writes.</summary>
    public static byte[] Contents(int length)
    {
        var bytes = new byte[length];
        for (int i = 0; i < length; i++)
        {
            bytes[i] = ByteAt(i);
        }
        return bytes;
    }

    /// <summary>True when a PTE maps <paramref name="address"/> writable.</summary>
    public bool PteWritable(ulong address) =>
        (Space.Descriptor.PageTable.Lookup(address, Space.Descriptor.Probes) & Paging.Pte.Writable) != 0;

    public void Dispose()
    {
        Cpu.Dispose();
        Idle.Dispose();
        Space.Dispose();
        File.Dispose();
        System.IO.File.Delete(_path);
    }
}
