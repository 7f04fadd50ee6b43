namespace Faultline;

/// <summary>What a counter of <see cref="VmCounters"/> measures.</summary>
public enum VmCounterKind
{
    /// <summary>A count of events since the address space was created: it only grows (a Metrics counter).</summary>
    Counter,
    /// <summary>A level that rises and falls, such as resident pages (a Metrics up-down counter).</summary>
    Level,
}
