using Faultline.Backing;

namespace Faultline.Tests.Support;

/// <summary>
/// A file store whose first read stops until released (and fails when asked to), counting reads: the deterministic way
/// to hold a page cache's read-in with the page inserted and locked. Its bytes are <see cref="Contents"/>.
/// </summary>
internal sealed class GatedStore(long length) : IFileStore
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private int _reads;
    private long _length = length;

    public ManualResetEventSlim Entered { get; } = new();

    public ManualResetEventSlim Release { get; } = new();

    public ManualResetEventSlim Resized { get; } = new();

    public bool FailFirst { get; init; }

    public int Reads => Volatile.Read(ref _reads);

    public long Length => _length;

    public bool CanWrite => true;

    public static byte[] Contents(long offset, int count)
    {
        var bytes = new byte[count];
        for (int i = 0; i < count; i++)
        {
            bytes[i] = (byte)((offset + i) % 251 + 1);
        }
        return bytes;
    }

    public int Read(long offset, Span<byte> buffer)
    {
        // The bytes are those of the file when the read began: a truncation meanwhile does not cut them.
        long length = Volatile.Read(ref _length);
        int read = Interlocked.Increment(ref _reads);
        if (read == 1)
        {
            Entered.Set();
            Release.Wait(Wait);
            if (FailFirst)
            {
                throw new IOException("injected read failure");
            }
        }
        int count = (int)Math.Clamp(length - offset, 0, buffer.Length);
        Contents(offset, count).CopyTo(buffer);
        return count;
    }

    public void Write(long offset, ReadOnlySpan<byte> data) => throw new IOException("not written in these tests");

    public void SetLength(long length)
    {
        Volatile.Write(ref _length, length);
        Resized.Set();
    }

    public void Flush()
    {
    }

    public void Dispose()
    {
        Entered.Dispose();
        Release.Dispose();
        Resized.Dispose();
    }
}
