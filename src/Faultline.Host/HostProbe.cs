namespace Faultline.Host;

/// <summary>
/// Probes whether addresses of this process are readable/writable without risking a SIGSEGV,
/// by going through the kernel's remote-access path (process_vm_readv/writev on our own pid).
/// That path uses GUP permission checks on the VMA flags (VM_READ / VM_WRITE), not the hardware
/// page-table permissions: e.g. a PROT_WRITE-only page is NOT readable here although an x86 load
/// from it succeeds, and a PROT_EXEC-only page is not readable either.
/// </summary>
public static class HostProbe
{
    /// <summary>
    /// Reads one byte through process_vm_readv. A successful read faults the page in like a
    /// read access would: an untouched private anonymous page gets the shared zero page, or a
    /// private zeroed page on a host without it (<see cref="HostFacts.ReadFaultMapsZeroPage"/>).
    /// </summary>
    /// <param name="addr">Address to read.</param>
    /// <param name="value">The byte read, 0 on failure.</param>
    /// <returns>0 or the errno (EFAULT for unmapped or non-VM_READ memory).</returns>
    public static unsafe int ReadErrno(ulong addr, out byte value)
    {
        byte b = 0;
        int err = LibC.ProcessVmReadvErrno(LibC.Pid, (ulong)&b, addr, 1, out long n);
        if (err == 0 && n != 1)
        {
            err = Errno.EFAULT;
        }

        value = err == 0 ? b : (byte)0;
        return err;
    }

    /// <summary>Writes one byte through process_vm_writev (breaks COW / allocates like a write fault).</summary>
    /// <param name="addr">Address to write.</param>
    /// <param name="value">The byte to store.</param>
    /// <returns>0 or the errno (EFAULT for unmapped or non-VM_WRITE memory).</returns>
    public static unsafe int WriteErrno(ulong addr, byte value)
    {
        byte b = value;
        int err = LibC.ProcessVmWritevErrno(LibC.Pid, (ulong)&b, addr, 1, out long n);
        if (err == 0 && n != 1)
        {
            err = Errno.EFAULT;
        }

        return err;
    }

    /// <summary>True if one byte at <paramref name="addr"/> can be read (VMA has VM_READ and is mapped).</summary>
    /// <param name="addr">Address to probe.</param>
    /// <returns>Whether process_vm_readv succeeded.</returns>
    public static bool CanRead(ulong addr) => ReadErrno(addr, out _) == 0;

    /// <summary>
    /// True if one byte at <paramref name="addr"/> can be written. The byte is read first and
    /// written back unchanged so probing preserves data; it therefore also requires VM_READ
    /// (a PROT_WRITE-only page reports false). On success the page is resident and dirty.
    /// </summary>
    /// <param name="addr">Address to probe.</param>
    /// <returns>Whether the read-then-write round trip succeeded.</returns>
    public static bool CanWrite(ulong addr)
        => ReadErrno(addr, out byte b) == 0 && WriteErrno(addr, b) == 0;
}
