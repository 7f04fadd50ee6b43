using Xunit;
using static Faultline.Tests.Support.SpaceHelpers;

namespace Faultline.Tests.Unit;

/// <summary>Zero-copy spans of a <see cref="CpuScope"/>: one page at most, translated like the access they stand for.</summary>
public sealed class ScopedSpanTests
{
    private const ulong Page = 4096;
    private const ulong Base = 0x6800_0000;

    private static AddressSpace NewSpace() => new(new FaultlineOptions { PhysicalMemoryBytes = 16 << 20 });

    [Fact]
    public void AWritableSpanIsTheGuestMemoryItself()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, 2 * Page);
        using Cpu cpu = space.AttachCpu();
        using (CpuScope scope = cpu.EnterScope())
        {
            Span<byte> span = scope.GetSpan(a + Page - 8, 8);
            span.Fill(0xEE);
            Assert.Equal(0xEEEE_EEEE_EEEE_EEEEul, scope.Load<ulong>(a + Page - 8));
            Assert.Equal(0xEE, scope.GetReadOnlySpan(a + Page - 1, 1)[0]);
            Assert.Throws<ArgumentOutOfRangeException>(() => scope.GetSpan(a + Page - 8, 9));
            Assert.Throws<ArgumentOutOfRangeException>(() => scope.GetReadOnlySpan(a, 0));
            Assert.Throws<ArgumentOutOfRangeException>(() => scope.GetReadOnlySpan(a, 8, AccessKind.Write));
        }
        Assert.Equal(0xEEu, cpu.Load<byte>(a + Page - 8));
    }

    [Fact]
    public void SpansCheckPermissionsAndBreakCopyOnWrite()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        ulong ro = MapFixed(space, Base + Page, Page, Protection.Read);
        using Cpu parent = space.AttachCpu();
        parent.Store(a, 1L);
        using AddressSpace child = space.Fork();
        using Cpu cpu = child.AttachCpu();
        using (CpuScope scope = cpu.EnterScope())
        {
            Assert.Equal(1, scope.GetReadOnlySpan(a, 1)[0]);
            scope.GetSpan(a, 1)[0] = 2; // copy-on-write broken: the child's own copy
            Assert.Equal(AccessOutcome.SegvAccErr, scope.TryGetSpan(ro, 8, out Span<byte> refused));
            Assert.True(refused.IsEmpty);
            Assert.Equal(AccessOutcome.Ok, scope.TryGetReadOnlySpan(ro, 8, AccessKind.Read, out ReadOnlySpan<byte> zeros));
            Assert.Equal(new byte[8], zeros.ToArray());
            Assert.Equal(AccessOutcome.SegvAccErr, scope.TryGetReadOnlySpan(ro, 8, AccessKind.Execute, out _));
            Assert.Equal(AccessOutcome.SegvMapErr, scope.TryGetReadOnlySpan(Base + 8 * Page, 8, AccessKind.Read, out _));
            var thrown = Assert.Throws<SegmentationFaultException>(() => scope.GetSpan(ro + 4, 4));
            Assert.Equal(ro + 4, thrown.Address);
        }
        Assert.Equal(2L, cpu.Load<long>(a));
        Assert.Equal(1L, parent.Load<long>(a));
    }

    [Fact]
    public void AnEndedScopeLendsNoSpan()
    {
        using AddressSpace space = NewSpace();
        ulong a = MapFixed(space, Base, Page);
        using Cpu cpu = space.AttachCpu();
        CpuScope scope = cpu.EnterScope();
        scope.Dispose();
        Assert.Throws<ObjectDisposedException>(() => scope.GetSpan(a, 8));
    }
}
