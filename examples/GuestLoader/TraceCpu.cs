namespace Faultline.Examples.GuestLoader;

/// <summary>
/// A trace-driven "CPU": instead of decoding instructions it performs the memory accesses a program would — an
/// instruction fetch at the entry point, loads from its data, stores to a device register — through a Faultline
/// <see cref="Cpu"/>, so every access takes the same translation, fault and device paths an interpreter's would.
/// </summary>
/// <remarks>Not thread-safe, like the <see cref="Cpu"/> it drives: one guest thread.</remarks>
public sealed class TraceCpu(Cpu cpu)
{
    /// <summary>Fetches <paramref name="destination"/>.Length instruction bytes at <paramref name="address"/> (execute access).</summary>
    public void FetchInstructions(ulong address, Span<byte> destination)
    {
        for (int i = 0; i < destination.Length; i++)
        {
            destination[i] = cpu.Fetch<byte>(address + (ulong)i);
        }
    }

    /// <summary>
    /// Copies the NUL-terminated string at <paramref name="source"/> (at most <paramref name="limit"/> bytes) to a
    /// UART's transmit register, polling its line status before each byte as a driver does, then ends the line.
    /// </summary>
    public void PrintString(ulong source, ulong uart, int limit)
    {
        for (int i = 0; i < limit; i++)
        {
            byte c = cpu.Load<byte>(source + (ulong)i);
            if (c == 0)
            {
                break;
            }
            WaitForTransmitter(uart);
            cpu.Store(uart + Uart.TransmitRegister, c);
        }
        WaitForTransmitter(uart);
        cpu.Store(uart + Uart.TransmitRegister, (byte)'\n');
    }

    /// <summary>Stores <paramref name="value"/> at <paramref name="address"/>, as the program's data writes would.</summary>
    public void Store(ulong address, ulong value) => cpu.Store(address, value);

    private void WaitForTransmitter(ulong uart)
    {
        while ((cpu.Load<byte>(uart + Uart.LineStatusRegister) & 0x20) == 0)
        {
            Thread.SpinWait(1);
        }
    }
}
