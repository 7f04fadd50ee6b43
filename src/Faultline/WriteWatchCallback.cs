namespace Faultline;

/// <summary>
/// Called by <see cref="WriteWatch"/> on the first write to a watched page since it was armed: <paramref name="address"/>
/// is the address the store was for, <paramref name="cpu"/> the Cpu whose store is about to be retried. Runs on that Cpu's
/// thread, with no lock of the address space held; it may call the address space (map, protect, re-arm) but must
/// not access memory through <paramref name="cpu"/> (its access is in progress). An exception ends the access and
/// reaches the caller of that access; the page stays disarmed.
/// </summary>
public delegate void WriteWatchCallback(ulong address, Cpu cpu);
