namespace Faultline.Areas;

/// <summary>
/// The user-fault channels of one address space, so its teardown can wake every fault blocked on one (a dying process's
/// fatal signal ends the kernel's <c>handle_userfault</c> sleep).
/// </summary>
/// <remarks>Thread safety: every member may be called from any thread.</remarks>
internal sealed class UserFaultRegistry
{
    private readonly List<UserFaultContext> _contexts = [];

    /// <summary>Adds a channel of this address space.</summary>
    public void Add(UserFaultContext context)
    {
        lock (_contexts)
        {
            _contexts.Add(context);
        }
    }

    /// <summary>Removes a released channel.</summary>
    public void Remove(UserFaultContext context)
    {
        lock (_contexts)
        {
            _contexts.Remove(context);
        }
    }

    /// <summary>Wakes every fault blocked on any channel of this address space (its teardown began).</summary>
    public void WakeAll()
    {
        UserFaultContext[] contexts;
        lock (_contexts)
        {
            contexts = [.. _contexts];
        }
        foreach (UserFaultContext context in contexts)
        {
            context.Wake(0, 0);
        }
    }
}
