using BenchmarkDotNet.Attributes;

namespace Faultline.Benchmarks;

/// <summary>
/// An 8-byte load from a memory-mapped I/O region (<see cref="AddressSpace.MapDevice"/>) against the TLB-hit load of
/// resident memory, on each fault path. The device does nothing (it returns its offset), so the row is the cost of
/// reaching it: a TLB miss, a failed walk, then one fault on the path that calls the device under its lock (the
/// Cpu's hint skips the fault that would only find the device, since every load is to the same page).
/// </summary>
[MemoryDiagnoser]
public class DeviceBenchmarks
{
    private const int Loads = 64;

    private AddressSpace? _space;
    private Cpu? _cpu;
    private Cpu? _idle;
    private ulong _memory;
    private ulong _device;

    /// <summary>The fault path the device access takes.</summary>
    [Params(BenchPath.MmapLock, BenchPath.Speculative, BenchPath.VmaLock)]
    public BenchPath Path { get; set; }

    /// <summary>Maps a resident page and a one-page device.</summary>
    [GlobalSetup]
    public void Setup()
    {
        (_space, _cpu, _idle) = Spaces.Create(Path, 64L << 20);
        _memory = _space.Map(0, 4096, Protection.ReadWrite, MapFlags.PrivateAnonymous);
        _cpu.Store(_memory, 0L);
        _device = _space.MapDevice(0, 4096, Protection.ReadWrite, MapFlags.Shared, new NullDevice(), "bench-device");
    }

    /// <summary>A load that hits the TLB (the baseline).</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Loads)]
    public ulong LoadTlbHit()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Loads; i++)
        {
            sum += cpu.Load<ulong>(_memory + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary>A load from the device.</summary>
    [Benchmark(OperationsPerInvoke = Loads)]
    public ulong LoadDevice()
    {
        Cpu cpu = _cpu!;
        ulong sum = 0;
        for (int i = 0; i < Loads; i++)
        {
            sum += cpu.Load<ulong>(_device + (ulong)(i * 8));
        }
        return sum;
    }

    /// <summary>Releases the address space.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _idle?.Dispose();
        _cpu?.Dispose();
        _space?.Dispose();
    }

    private sealed class NullDevice : IMmioDevice
    {
        public ulong Read(ulong offset, int size) => offset;

        public void Write(ulong offset, int size, ulong value)
        {
        }
    }
}
