using System.Numerics;
using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>
/// The Cpu's atomics at every width: each returns the old value and leaves the new one, needs write permission, breaks
/// copy-on-write like a store, and refuses a misaligned address with SIGBUS.
/// </summary>
public sealed class AtomicTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x5000_0000;

    private static AddressSpace NewSpace() => new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

    [Fact]
    public void EveryOperationReturnsTheOldValueAtEveryWidth()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        Check<byte>(cpu, a, 0xF0, 0x3C);
        Check<ushort>(cpu, a + 2, 0xF00F, 0x3C3C);
        Check<uint>(cpu, a + 4, 0xF000_000F, 0x3C3C_3C3C);
        Check<ulong>(cpu, a + 8, 0xF000_0000_0000_000F, 0x3C3C_3C3C_3C3C_3C3C);
        Check<sbyte>(cpu, a + 16, -16, 60);
        Check<short>(cpu, a + 18, -4081, 15420);
        Check<int>(cpu, a + 20, -268435441, 1010580540);
        Check<long>(cpu, a + 24, long.MinValue + 15, 0x3C3C_3C3C_3C3C_3C3C);
    }

    private static void Check<T>(Cpu cpu, ulong address, T initial, T operand) where T : unmanaged, IBinaryInteger<T>
    {
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.Exchange(address, operand));
        Assert.Equal(operand, cpu.Load<T>(address));
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.FetchAdd(address, operand));
        Assert.Equal(unchecked(initial + operand), cpu.Load<T>(address));
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.FetchAnd(address, operand));
        Assert.Equal(initial & operand, cpu.Load<T>(address));
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.FetchOr(address, operand));
        Assert.Equal(initial | operand, cpu.Load<T>(address));
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.FetchXor(address, operand));
        Assert.Equal(initial ^ operand, cpu.Load<T>(address));
        cpu.Store(address, initial);
        Assert.Equal(initial, cpu.CompareExchange(address, operand, operand)); // comparand differs: no store
        Assert.Equal(initial, cpu.Load<T>(address));
        Assert.Equal(AccessOutcome.Ok, cpu.TryCompareExchange(address, operand, initial, out T original));
        Assert.Equal(initial, original);
        Assert.Equal(operand, cpu.Load<T>(address));
    }

    [Fact]
    public void AtomicsOnResidentMemoryAllocateNothing()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        ulong sum = Operations(cpu, a);
        long allocated = GC.GetAllocatedBytesForCurrentThread();
        sum += Operations(cpu, a);
        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - allocated);
        Assert.NotEqual(0ul, sum);

        static ulong Operations(Cpu cpu, ulong a) =>
            cpu.Exchange(a, 1ul) + cpu.FetchAdd(a, 2ul) + cpu.FetchAnd(a, 7ul) + cpu.FetchOr(a, 8ul) + cpu.FetchXor(a, 1ul)
            + cpu.CompareExchange(a, 5ul, 3ul) + cpu.FetchAdd<byte>(a + 8, 1) + cpu.FetchXor<ushort>(a + 10, 1)
            + cpu.CompareExchange<ushort>(a + 12, 1, 0) + (cpu.TryFetchOr(a + 16, 1u, out uint old) == AccessOutcome.Ok ? old : 0);
    }

    [Fact]
    public void NarrowAtomicsLeaveTheNeighbouringBytesAlone()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        cpu.Store(a, 0x1122_3344_5566_7788ul);
        cpu.FetchAdd<byte>(a + 1, 0xFF);          // 0x77 + 0xFF wraps to 0x76, no carry out
        cpu.FetchXor<ushort>(a + 4, 0xFFFF);
        Assert.Equal(0x1122_CCBB_5566_7688ul, cpu.Load<ulong>(a));
    }

    [Fact]
    public void MisalignedAtomicsAreBusErrorsEvenAcrossAPage()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(AccessOutcome.BusError, cpu.TryFetchAdd(a + 1, (ushort)1, out _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryExchange(a + 2, 1u, out _));
        Assert.Equal(AccessOutcome.BusError, cpu.TryFetchOr(a + Page - 4, 1ul, out _));
        var thrown = Assert.Throws<SegmentationFaultException>(() => cpu.CompareExchange(a + 6, 1ul, 0ul));
        Assert.Equal(AccessOutcome.BusError, thrown.Outcome);
        Assert.Equal(a + 6, thrown.Address);
        Assert.Equal(0, space.ResidentPages); // refused before any translation
        Assert.Equal(AccessOutcome.Ok, cpu.TryFetchAdd(a + 3, (byte)1, out _)); // a byte is always aligned
        Assert.Throws<NotSupportedException>(() => cpu.FetchAdd(a, (UInt128)1));
    }

    [Fact]
    public void AtomicsAreWritesForPermissionsEvenWhenTheComparisonFails()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page, Protection.Read);
        using Cpu cpu = space.AttachCpu();
        Assert.Equal(0u, cpu.Load<uint>(a));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryCompareExchange(a, 5u, 7u, out _));
        Assert.Equal(AccessOutcome.SegvAccErr, cpu.TryFetchAnd(a, 0ul, out _));
        Assert.Equal(AccessOutcome.SegvMapErr, cpu.TryExchange(Base + 0x100_0000, (byte)1, out _));
    }

    [Fact]
    public void AnAtomicBreaksCopyOnWriteLikeAStore()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu parent = space.AttachCpu();
        parent.Store(a, 10L);
        using AddressSpace child = space.Fork();
        using Cpu childCpu = child.AttachCpu();
        Assert.Equal(10L, childCpu.FetchAdd(a, 5L));
        Assert.Equal(15L, childCpu.Load<long>(a));
        Assert.Equal(10L, parent.Load<long>(a));
        Assert.Equal(10u, parent.CompareExchange(a, 20u, 10u));
        Assert.Equal(15L, childCpu.Load<long>(a));
        Assert.Equal(20L, parent.Load<long>(a));
    }

    [Fact]
    public void ConcurrentNarrowAddsInOneWordLoseNoUpdate()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        const int Iterations = 20_000;
        using Cpu first = space.AttachCpu();
        using Cpu second = space.AttachCpu();
        first.Store(a, 0ul);
        // Two Cpus add to different bytes and halves of the same 8 bytes: a non-atomic read-modify-write of the
        // containing word would lose the other's updates.
        Parallel.Invoke(
            () =>
            {
                for (int i = 0; i < Iterations; i++)
                {
                    first.FetchAdd<byte>(a, 1);
                    first.FetchAdd<ushort>(a + 4, 1);
                }
            },
            () =>
            {
                for (int i = 0; i < Iterations; i++)
                {
                    second.FetchAdd<byte>(a + 1, 1);
                    second.FetchXor<ushort>(a + 6, 1);
                }
            });
        Assert.Equal((byte)(Iterations & 0xFF), first.Load<byte>(a));
        Assert.Equal((byte)(Iterations & 0xFF), first.Load<byte>(a + 1));
        Assert.Equal((ushort)Iterations, first.Load<ushort>(a + 4));
        Assert.Equal((ushort)0, first.Load<ushort>(a + 6)); // an even number of XORs with 1
    }
}
