namespace Faultline.Examples.GuestLoader;

/// <summary>What <see cref="LoaderDemo.Run"/> observed.</summary>
/// <param name="ImagePages">Pages the ELF's segments span.</param>
/// <param name="PagesLoaded">Pages the user-fault handler filled from the file (only those the CPU touched).</param>
/// <param name="EntryBytesMatch">The bytes fetched at the entry point equal the file's.</param>
/// <param name="UartLines">Lines the guest printed through the UART.</param>
/// <param name="UartTextMatches">The UART printed the bytes the file holds at the address the CPU copied from.</param>
/// <param name="PagesWritten">Pages of the writable segments the CPU wrote after the snapshot.</param>
/// <param name="PagesRestored">Pages the dirty log reported and the restore copied back.</param>
/// <param name="RestoreMatches">After the restore, the writable segments equal the snapshot byte for byte.</param>
public sealed record LoaderReport(long ImagePages, long PagesLoaded, bool EntryBytesMatch, IReadOnlyList<string> UartLines,
    bool UartTextMatches, int PagesWritten, long PagesRestored, bool RestoreMatches)
{
    /// <summary>Every check held: demand loading filled only touched pages, the UART and the restore were exact.</summary>
    public bool AllChecksHeld =>
        EntryBytesMatch && UartTextMatches && RestoreMatches && PagesRestored == PagesWritten
        && PagesLoaded > 0 && PagesLoaded <= ImagePages;
}
