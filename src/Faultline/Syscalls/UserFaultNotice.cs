using Faultline.Areas;

namespace Faultline.Syscalls;

/// <summary>
/// A non-cooperative event prepared under the mmap lock and posted once the change is done (an entry of the kernel's
/// <c>uf_unmap</c> list, <c>struct userfaultfd_unmap_ctx</c>, or the <c>vm_userfaultfd_ctx</c> of an mremap): its
/// channel's <c>mmap_changing</c> was raised when it was prepared, so resolutions answer EAGAIN from then on.
/// </summary>
internal readonly record struct UserFaultNotice(UserFaultContext Context, UserFaultMessage Message);
