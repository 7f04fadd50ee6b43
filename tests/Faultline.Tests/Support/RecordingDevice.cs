using System.Collections.Concurrent;
using System.Buffers.Binary;

namespace Faultline.Tests.Support;

/// <summary>
/// A memory-mapped I/O device for tests: registers over a byte array (so what is stored reads back), every call
/// recorded in order, and an optional hook run inside each call (to stop a Cpu while the device is being accessed).
/// </summary>
internal sealed class RecordingDevice : IMmioDevice
{
    private readonly byte[] _registers;

    public RecordingDevice(int size = 1 << 16) => _registers = new byte[size];

    /// <summary>Every call, in order: kind ("read", "write", "read-span", "write-span"), offset, size, value (register writes and reads).</summary>
    public ConcurrentQueue<(string Kind, ulong Offset, int Size, ulong Value)> Calls { get; } = new();

    /// <summary>Run inside every call, before it touches the registers.</summary>
    public Action? Hook { get; set; }

    /// <summary>The thread-safe count of calls so far.</summary>
    public int CallCount => Calls.Count;

    public ulong Read(ulong offset, int size)
    {
        Hook?.Invoke();
        ulong value = 0;
        lock (_registers)
        {
            for (int i = 0; i < size; i++)
            {
                value |= (ulong)_registers[(int)offset + i] << (8 * i);
            }
        }
        Calls.Enqueue(("read", offset, size, value));
        return value;
    }

    public void Write(ulong offset, int size, ulong value)
    {
        Hook?.Invoke();
        lock (_registers)
        {
            for (int i = 0; i < size; i++)
            {
                _registers[(int)offset + i] = (byte)(value >> (8 * i));
            }
        }
        Calls.Enqueue(("write", offset, size, value));
    }

    public void Read(ulong offset, Span<byte> destination)
    {
        Hook?.Invoke();
        lock (_registers)
        {
            _registers.AsSpan((int)offset, destination.Length).CopyTo(destination);
        }
        Calls.Enqueue(("read-span", offset, destination.Length, 0));
    }

    public void Write(ulong offset, ReadOnlySpan<byte> source)
    {
        Hook?.Invoke();
        lock (_registers)
        {
            source.CopyTo(_registers.AsSpan((int)offset));
        }
        Calls.Enqueue(("write-span", offset, source.Length, 0));
    }

    /// <summary>The register bytes at <paramref name="offset"/> as a little-endian 64-bit value.</summary>
    public ulong Peek64(int offset)
    {
        lock (_registers)
        {
            return BinaryPrimitives.ReadUInt64LittleEndian(_registers.AsSpan(offset));
        }
    }

    /// <summary>A copy of the register bytes [offset, offset + length).</summary>
    public byte[] Snapshot(int offset, int length)
    {
        lock (_registers)
        {
            return _registers.AsSpan(offset, length).ToArray();
        }
    }
}
