namespace Faultline;

/// <summary>The read-modify-write a <see cref="Cpu"/> atomic performs (x86 <c>lock xchg</c>, <c>lock xadd</c>, <c>lock and/or/xor</c>, <c>lock cmpxchg</c>).</summary>
internal enum AtomicOperation
{
    /// <summary>Store the operand, return the old value.</summary>
    Exchange,
    /// <summary>Add the operand (wrapping), return the old value.</summary>
    Add,
    /// <summary>AND with the operand, return the old value.</summary>
    And,
    /// <summary>OR with the operand, return the old value.</summary>
    Or,
    /// <summary>XOR with the operand, return the old value.</summary>
    Xor,
    /// <summary>Store the operand if the value equals the comparand, return the old value.</summary>
    CompareExchange,
}
