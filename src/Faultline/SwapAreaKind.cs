namespace Faultline;

/// <summary>What holds swapped-out pages (<see cref="SwapOptions.Kind"/>).</summary>
public enum SwapAreaKind
{
    /// <summary>zram: an in-memory area that keeps each page LZ4-compressed (a page of one repeated byte costs one byte).</summary>
    Compressed = 0,
    /// <summary>A swap file on the host, created at <see cref="SwapOptions.FilePath"/> and deleted when the last address space over the guest RAM goes.</summary>
    File = 1,
}
