/*
 * The host kernel's side of `faultline bench --workload userfault`: the round trip of a missing fault through
 * userfaultfd(2), fault -> handler thread -> UFFDIO_COPY -> the faulting thread resumes, once per page.
 *
 *   uffd_bench PAGES
 *
 * Opens a userfaultfd (UFFD_USER_MODE_ONLY when not root, as /proc/sys/vm/unprivileged_userfaultfd = 0 requires),
 * maps PAGES pages of private anonymous memory (MADV_NOHUGEPAGE: 4 KiB pages, as Faultline), registers them for
 * missing faults and starts a handler thread that reads each fault message (blocking read(2)) and answers it with
 * UFFDIO_COPY of a page stamped with the faulting address. The main thread then reads one word of every page (one
 * missing fault a page, each resolved by the handler) and checks the stamp. The loop is timed with CLOCK_MONOTONIC
 * and the main thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
 *
 * Prints one line of key=value integers (pages, wall_ns, cpu_ns, handled, mismatches, user_mode_only) and exits 0;
 * exits 2 with a message on stderr when userfaultfd is unavailable here, 1 on any other failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

struct handler {
    int uffd;
    long pages;
    long handled;
    int error;
};

static uint64_t stamp(uintptr_t address)
{
    return (address * 0x9E3779B97F4A7C15ULL) | 1;
}

static int64_t clock_ns(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *handle(void *argument)
{
    struct handler *h = argument;
    uint64_t *source = aligned_alloc(PAGE, PAGE);
    if (source == NULL) {
        h->error = ENOMEM;
        return NULL;
    }
    memset(source, 0, PAGE);
    while (h->handled < h->pages) {
        struct uffd_msg message;
        ssize_t got = read(h->uffd, &message, sizeof message);
        if (got != (ssize_t)sizeof message) {
            if (got < 0 && errno == EINTR)
                continue;
            h->error = got < 0 ? errno : EIO;
            break;
        }
        if (message.event != UFFD_EVENT_PAGEFAULT)
            continue;
        uintptr_t page = (uintptr_t)message.arg.pagefault.address & ~(PAGE - 1);
        source[0] = stamp(page);
        struct uffdio_copy copy = { .dst = page, .src = (uintptr_t)source, .len = PAGE, .mode = 0 };
        if (ioctl(h->uffd, UFFDIO_COPY, &copy) != 0 && errno != EEXIST) {
            h->error = errno;
            break;
        }
        h->handled++;
    }
    free(source);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 2 || atol(argv[1]) <= 0) {
        fprintf(stderr, "usage: uffd_bench PAGES\n");
        return 1;
    }
    long pages = atol(argv[1]);
    int user_mode_only = geteuid() != 0;
    int uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | (user_mode_only ? UFFD_USER_MODE_ONLY : 0));
    if (uffd < 0) {
        fprintf(stderr, "userfaultfd unavailable: %s (%s; /proc/sys/vm/unprivileged_userfaultfd governs non-root use)\n",
                strerror(errno), user_mode_only ? "not root, UFFD_USER_MODE_ONLY" : "root");
        return 2;
    }
    struct uffdio_api api = { .api = UFFD_API, .features = 0 };
    if (ioctl(uffd, UFFDIO_API, &api) != 0) {
        fprintf(stderr, "userfaultfd unavailable: UFFDIO_API: %s\n", strerror(errno));
        return 2;
    }
    size_t length = (size_t)pages * PAGE;
    unsigned char *region = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) {
        fprintf(stderr, "mmap: %s\n", strerror(errno));
        return 1;
    }
    madvise(region, length, MADV_NOHUGEPAGE);
    struct uffdio_register reg = { .range = { .start = (uintptr_t)region, .len = length }, .mode = UFFDIO_REGISTER_MODE_MISSING };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) {
        fprintf(stderr, "userfaultfd unavailable: UFFDIO_REGISTER: %s\n", strerror(errno));
        return 2;
    }
    struct handler h = { .uffd = uffd, .pages = pages };
    pthread_t thread;
    if (pthread_create(&thread, NULL, handle, &h) != 0) {
        fprintf(stderr, "pthread_create failed\n");
        return 1;
    }
    long mismatches = 0;
    int64_t wall = clock_ns(CLOCK_MONOTONIC), cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID);
    for (long i = 0; i < pages; i++) {
        uintptr_t page = (uintptr_t)(region + i * PAGE);
        mismatches += *(volatile uint64_t *)page != stamp(page);
    }
    wall = clock_ns(CLOCK_MONOTONIC) - wall;
    cpu = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu;
    pthread_join(thread, NULL);
    if (h.error != 0) {
        fprintf(stderr, "handler: %s\n", strerror(h.error));
        return 1;
    }
    printf("pages=%ld wall_ns=%lld cpu_ns=%lld handled=%ld mismatches=%ld user_mode_only=%d\n", pages, (long long)wall,
           (long long)cpu, h.handled, mismatches, user_mode_only);
    return 0;
}
