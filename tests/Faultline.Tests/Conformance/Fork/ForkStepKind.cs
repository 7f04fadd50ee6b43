namespace Faultline.Tests.Conformance.Fork;

/// <summary>What one step of a fork script does (the verbs of <c>Native/fork_oracle.c</c>).</summary>
internal enum ForkStepKind
{
    /// <summary><c>mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)</c> in one process.</summary>
    Map,

    /// <summary><c>mmap(MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED)</c> in one process: shared memory its later children share.</summary>
    SharedMap,

    /// <summary><c>mprotect</c> in one process.</summary>
    Protect,

    /// <summary><c>munmap</c> in one process.</summary>
    Munmap,

    /// <summary><c>madvise</c> in one process.</summary>
    Advise,

    /// <summary>A one-byte store in one process.</summary>
    Write,

    /// <summary>A one-byte load in one process.</summary>
    Read,

    /// <summary><c>fork()</c>: the process's child gets the next process number.</summary>
    Fork,

    /// <summary>The process exits (its memory goes).</summary>
    Exit,

    /// <summary>Every live process reports its maps, smaps and the bytes at the sample addresses.</summary>
    Report,
}
