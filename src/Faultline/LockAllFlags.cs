namespace Faultline;

/// <summary><c>mlockall</c> flags (<c>MCL_*</c>, Linux values).</summary>
[Flags]
public enum LockAllFlags
{
    /// <summary>No flag: EINVAL.</summary>
    None = 0,
    /// <summary><c>MCL_CURRENT</c>: lock every present mapping.</summary>
    Current = 1,
    /// <summary><c>MCL_FUTURE</c>: lock every later mapping (<c>mm->def_flags</c>).</summary>
    Future = 2,
    /// <summary><c>MCL_ONFAULT</c>: with either of the others, lock pages as they are faulted in; EINVAL alone.</summary>
    OnFault = 4,
}
