using System.Runtime.CompilerServices;
using Faultline.Concurrency;
using Xunit;

namespace Faultline.Tests.Unit;

public class ConcurrencyPrimitiveTests
{
    [Fact]
    public void MmapLockSequenceIsOddOnlyWhileWriteHeld()
    {
        var mmapLock = new MmapLock();
        Assert.Equal(0, mmapLock.LockSequence & 1);
        mmapLock.EnterWrite();
        Assert.Equal(1, mmapLock.LockSequence & 1);
        Assert.False(mmapLock.TryEnterRead());
        mmapLock.DowngradeWrite();
        Assert.Equal(0, mmapLock.LockSequence & 1);
        Assert.True(mmapLock.TryEnterRead());
        Assert.False(mmapLock.TryEnterWrite());
        mmapLock.ExitRead();
        mmapLock.ExitRead();
        Assert.True(mmapLock.TryEnterWrite());
        mmapLock.ExitWrite();
        Assert.False(mmapLock.IsLocked);
    }

    [Fact]
    public void WaitingWriterBlocksNewReaders()
    {
        var mmapLock = new MmapLock();
        mmapLock.EnterRead();
        var writer = new Thread(() =>
        {
            mmapLock.EnterWrite();
            mmapLock.ExitWrite();
        });
        writer.Start();
        SpinWait.SpinUntil(() => !mmapLock.TryEnterReadProbe(), 5000);
        Assert.False(mmapLock.TryEnterRead());
        mmapLock.ExitRead();
        Assert.True(writer.Join(5000));
        Assert.True(mmapLock.TryEnterRead());
        mmapLock.ExitRead();
    }

    [Fact]
    public void AWriterThatSleptIsHandedTheLockBeforeAWriterThatRetakesIt()
    {
        var mmapLock = new MmapLock();
        var order = new System.Collections.Concurrent.ConcurrentQueue<string>();
        mmapLock.EnterWrite();
        int sleeperId = 0;
        var sleeper = new Thread(() =>
        {
            sleeperId = Environment.CurrentManagedThreadId;
            mmapLock.EnterWrite();
            order.Enqueue("sleeper");
            mmapLock.ExitWrite();
        });
        sleeper.Start();
        // The waiting writer spun, went to sleep and claimed the hand-off.
        Assert.True(SpinWait.SpinUntil(() => mmapLock.HandoffWriter != 0, 5000));
        Assert.Equal(sleeperId, mmapLock.HandoffWriter);

        // RWSEM_FLAG_HANDOFF: releasing and retaking at once (a churn loop) must not overtake the sleeper; the retake
        // succeeds only if the sleeper already had its turn.
        mmapLock.ExitWrite();
        if (mmapLock.TryEnterWrite())
        {
            order.Enqueue("retake");
            mmapLock.ExitWrite();
        }
        Assert.True(sleeper.Join(5000));
        Assert.Equal("sleeper", order.First());
        Assert.Equal(0, mmapLock.HandoffWriter);
    }

    // Before RWSEM_WAIT_TIMEOUT a running writer may take the lock ahead of a sleeping one: handing it over at every
    // release would leave it idle until the sleeper runs (a convoy). The sleeper gets it once the retaker lets go.
    [Fact]
    public void ARunningWriterTakesTheLockAheadOfAWriterThatSleptLessThanTheHandoffDelay()
    {
        var mmapLock = new MmapLock(TimeSpan.FromHours(1));
        mmapLock.EnterWrite();
        var sleeper = new Thread(() =>
        {
            mmapLock.EnterWrite();
            mmapLock.ExitWrite();
        });
        sleeper.Start();
        Assert.True(SpinWait.SpinUntil(() => mmapLock.SleepingThreads != 0, 5000), "staging: the writer went to sleep");

        mmapLock.ExitWrite();
        Assert.True(mmapLock.TryEnterWrite(), "no hand-off is claimed before the delay");
        Assert.Equal(0, mmapLock.HandoffWriter);
        mmapLock.ExitWrite();
        Assert.True(sleeper.Join(5000));
    }

    [Fact]
    public void AFaultingCpusGracePeriodSkipsNothingWhenAnotherReaderIsInside()
    {
        var generation = new TlbGeneration();
        var domain = new RcuDomain(generation);
        var caller = new RcuReader(generation);
        var other = new RcuReader(generation);
        domain.Register(caller);

        // Alone: nothing to wait for.
        domain.Synchronize(0, ulong.MaxValue, caller);
        Assert.Equal(1, domain.GracePeriods);

        domain.Register(other);
        other.Enter();
        var done = new ManualResetEventSlim();
        var writer = new Thread(() =>
        {
            domain.Synchronize(0, ulong.MaxValue, caller);
            done.Set();
        });
        writer.Start();
        Assert.True(SpinWait.SpinUntil(() => domain.ReaderWaits > 0, 5000));
        Assert.False(done.IsSet);
        other.Exit();
        Assert.True(writer.Join(5000));
        Assert.Equal(2, domain.GracePeriods);
    }

    [Fact]
    public void SynchronizeWaitsForAReaderInsideItsSection()
    {
        var generation = new TlbGeneration();
        var domain = new RcuDomain(generation);
        var reader = new RcuReader(generation);
        domain.Register(reader);
        reader.Enter();
        var done = new ManualResetEventSlim();
        var writer = new Thread(() =>
        {
            domain.Synchronize();
            done.Set();
        });
        writer.Start();
        Assert.False(done.Wait(200));
        reader.Exit();
        Assert.True(done.Wait(5000));
        Assert.Equal(1, generation.Current);
        Assert.Equal(1, domain.GracePeriods);
    }

    [Fact]
    public void AReaderInsideSinceAnOlderGenerationIsWaitedForUntilItLeaves()
    {
        var generation = new TlbGeneration();
        var domain = new RcuDomain(generation);
        var stale = new RcuReader(generation);
        var fresh = new RcuReader(generation);
        domain.Register(stale);
        domain.Register(fresh);
        domain.Synchronize();
        fresh.Enter();
        // `fresh` entered after the first grace period and saw generation 1; the next one bumps to 2, so that
        // section predates it and must end first.
        var done = new ManualResetEventSlim();
        var writer = new Thread(() =>
        {
            domain.Synchronize();
            done.Set();
        });
        writer.Start();
        Assert.False(done.Wait(200), "a reader that saw generation 1 predates the bump to 2 and must be waited for");
        fresh.Exit();
        Assert.True(done.Wait(5000));
        stale.Enter();
        Assert.True(stale.IsInside);
        stale.Exit();
        domain.Synchronize();
        Assert.Equal(3, generation.Current);
    }

    [Fact]
    public void DeferredCallbacksRunOnlyAfterTheNextGracePeriod()
    {
        var generation = new TlbGeneration();
        var domain = new RcuDomain(generation);
        var reader = new RcuReader(generation);
        domain.Register(reader);
        var ran = new StrongBox<int>();
        reader.Enter();
        domain.Defer(static state => Interlocked.Increment(ref ((StrongBox<int>)state!).Value), ran);
        Assert.Equal(1, domain.PendingCallbacks);
        var writer = new Thread(domain.Synchronize);
        writer.Start();
        Assert.False(writer.Join(200), "the grace period must wait for the reader");
        Assert.Equal(0, Volatile.Read(ref ran.Value));
        reader.Exit();
        Assert.True(writer.Join(5000));
        Assert.Equal(1, ran.Value);
        Assert.Equal(0, domain.PendingCallbacks);
        domain.Synchronize();
        Assert.Equal(1, ran.Value);
    }

    [Fact]
    public void SeqCountRetryDetectsAWriteSection()
    {
        var seq = new SeqCount();
        int start = seq.ReadRaw();
        Assert.False(seq.Retry(start));
        seq.BeginWrite();
        Assert.True(seq.IsWriting);
        seq.EndWrite();
        Assert.True(seq.Retry(start));
        Assert.Equal(start + 2, seq.ReadRaw());
    }
}

internal static class MmapLockTestExtensions
{
    // A reader that arrives while a writer waits must back off; probes that state without holding the lock.
    public static bool TryEnterReadProbe(this MmapLock mmapLock)
    {
        if (mmapLock.TryEnterRead())
        {
            mmapLock.ExitRead();
            return true;
        }
        return false;
    }
}
