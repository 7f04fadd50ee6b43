using System.Numerics;

namespace Faultline;

/// <summary>
/// The host side of a <see cref="Cpu"/> atomic: one <see cref="AtomicOperation"/> on a naturally aligned 1-, 2-, 4- or
/// 8-byte value in a frame, linearizable with every other Cpu's atomics and plain accesses of the same bytes. The
/// runtime's <see cref="Interlocked"/> has exchange and compare-exchange at every width (byte and ushort since .NET 9:
/// <c>lock cmpxchg</c> of that width on x64, no wider word involved) and add/and/or at 4 and 8 bytes; the rest is a
/// compare-exchange loop at the value's own width.
/// </summary>
/// <remarks>Stateless and thread-safe; the caller keeps the frame alive (its read section) across the call.</remarks>
internal static unsafe class GuestAtomics
{
    /// <summary>Applies <paramref name="operation"/> at <paramref name="p"/>, aligned to sizeof(T) (1, 2, 4 or 8); returns the old value.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static T Apply<T>(byte* p, AtomicOperation operation, T operand, T comparand) where T : unmanaged, IBinaryInteger<T>
    {
        if (sizeof(T) == sizeof(ulong))
        {
            return Unsafe.BitCast<ulong, T>(Apply64(ref *(ulong*)p, operation, Unsafe.BitCast<T, ulong>(operand), Unsafe.BitCast<T, ulong>(comparand)));
        }
        if (sizeof(T) == sizeof(uint))
        {
            return Unsafe.BitCast<uint, T>(Apply32(ref *(uint*)p, operation, Unsafe.BitCast<T, uint>(operand), Unsafe.BitCast<T, uint>(comparand)));
        }
        return operation switch
        {
            AtomicOperation.Exchange => Exchange(ref *(T*)p, operand),
            AtomicOperation.CompareExchange => CompareExchange(ref *(T*)p, operand, comparand),
            _ => Loop(ref *(T*)p, operation, operand),
        };
    }

    private static ulong Apply64(ref ulong target, AtomicOperation operation, ulong operand, ulong comparand) => operation switch
    {
        AtomicOperation.Exchange => Interlocked.Exchange(ref target, operand),
        AtomicOperation.Add => Interlocked.Add(ref target, operand) - operand,
        AtomicOperation.And => Interlocked.And(ref target, operand),
        AtomicOperation.Or => Interlocked.Or(ref target, operand),
        AtomicOperation.CompareExchange => Interlocked.CompareExchange(ref target, operand, comparand),
        _ => Loop(ref target, operation, operand),
    };

    private static uint Apply32(ref uint target, AtomicOperation operation, uint operand, uint comparand) => operation switch
    {
        AtomicOperation.Exchange => Interlocked.Exchange(ref target, operand),
        AtomicOperation.Add => Interlocked.Add(ref target, operand) - operand,
        AtomicOperation.And => Interlocked.And(ref target, operand),
        AtomicOperation.Or => Interlocked.Or(ref target, operand),
        AtomicOperation.CompareExchange => Interlocked.CompareExchange(ref target, operand, comparand),
        _ => Loop(ref target, operation, operand),
    };

    // The compare-exchange loop of the operations the runtime has no instruction for: the value read first may be stale
    // (a plain read; aligned, so never torn); the compare-exchange then fails and returns the current one to retry with.
    private static T Loop<T>(ref T target, AtomicOperation operation, T operand) where T : unmanaged, IBinaryInteger<T>
    {
        T seen = target;
        while (true)
        {
            T next = operation switch
            {
                AtomicOperation.Add => seen + operand,
                AtomicOperation.And => seen & operand,
                AtomicOperation.Or => seen | operand,
                _ => seen ^ operand,
            };
            T found = CompareExchange(ref target, next, seen);
            if (found == seen)
            {
                return seen;
            }
            seen = found;
        }
    }

    private static T Exchange<T>(ref T target, T value) where T : unmanaged, IBinaryInteger<T> =>
        sizeof(T) switch
        {
            1 => Unsafe.BitCast<byte, T>(Interlocked.Exchange(ref Unsafe.As<T, byte>(ref target), Unsafe.BitCast<T, byte>(value))),
            2 => Unsafe.BitCast<ushort, T>(Interlocked.Exchange(ref Unsafe.As<T, ushort>(ref target), Unsafe.BitCast<T, ushort>(value))),
            4 => Unsafe.BitCast<uint, T>(Interlocked.Exchange(ref Unsafe.As<T, uint>(ref target), Unsafe.BitCast<T, uint>(value))),
            _ => Unsafe.BitCast<ulong, T>(Interlocked.Exchange(ref Unsafe.As<T, ulong>(ref target), Unsafe.BitCast<T, ulong>(value))),
        };

    private static T CompareExchange<T>(ref T target, T value, T comparand) where T : unmanaged, IBinaryInteger<T> =>
        sizeof(T) switch
        {
            1 => Unsafe.BitCast<byte, T>(Interlocked.CompareExchange(ref Unsafe.As<T, byte>(ref target), Unsafe.BitCast<T, byte>(value),
                Unsafe.BitCast<T, byte>(comparand))),
            2 => Unsafe.BitCast<ushort, T>(Interlocked.CompareExchange(ref Unsafe.As<T, ushort>(ref target), Unsafe.BitCast<T, ushort>(value),
                Unsafe.BitCast<T, ushort>(comparand))),
            4 => Unsafe.BitCast<uint, T>(Interlocked.CompareExchange(ref Unsafe.As<T, uint>(ref target), Unsafe.BitCast<T, uint>(value),
                Unsafe.BitCast<T, uint>(comparand))),
            _ => Unsafe.BitCast<ulong, T>(Interlocked.CompareExchange(ref Unsafe.As<T, ulong>(ref target), Unsafe.BitCast<T, ulong>(value),
                Unsafe.BitCast<T, ulong>(comparand))),
        };
}
