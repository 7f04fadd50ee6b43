using System.Text;

namespace Faultline.Examples.GuestLoader;

/// <summary>
/// A 16550-style UART on an MMIO page: a byte stored to the transmit register (offset 0) is printed, a load of the
/// line-status register (offset 5) says the transmitter is empty; other registers read as zero and ignore stores.
/// Lines are written to <see cref="Output"/> whole, prefixed, so the guest's text stands out from the loader's.
/// </summary>
/// <remarks>Thread safety: called by every Cpu that stores to it; a lock keeps each line whole.</remarks>
public sealed class Uart(TextWriter output) : IMmioDevice
{
    /// <summary>Transmit holding register (write) / receive buffer (read).</summary>
    public const ulong TransmitRegister = 0;

    /// <summary>Line status register: bit 5 transmit holding register empty, bit 6 transmitter empty.</summary>
    public const ulong LineStatusRegister = 5;

    private const ulong TransmitterIdle = 0x60;

    private readonly StringBuilder _line = new();
    private readonly Lock _gate = new();

    /// <summary>Where the printed lines go.</summary>
    public TextWriter Output { get; } = output;

    /// <summary>Every line the guest printed, in order.</summary>
    public List<string> Lines { get; } = [];

    /// <inheritdoc/>
    public ulong Read(ulong offset, int size) => offset == LineStatusRegister ? TransmitterIdle : 0;

    /// <inheritdoc/>
    public void Write(ulong offset, int size, ulong value)
    {
        if (offset != TransmitRegister)
        {
            return;
        }
        lock (_gate)
        {
            char c = (char)(byte)value;
            if (c != '\n')
            {
                _line.Append(c);
                return;
            }
            string line = _line.ToString();
            _line.Clear();
            Lines.Add(line);
            Output.WriteLine($"  [uart] {line}");
        }
    }
}
