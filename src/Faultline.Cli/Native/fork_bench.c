/*
 * The host kernel's side of `faultline bench --workload fork`: one iteration of the fork workload with the real
 * fork(), so that the figures of the kernel row are the kernel's own and not those of a .NET process (which cannot
 * fork safely).
 *
 *   fork_bench MIB
 *
 * Maps MIB MiB of private anonymous memory (MADV_NOHUGEPAGE: 4 KiB pages, as Faultline), writes a stamp at offset 0
 * of every page (populate), then times fork(). The child writes a stamp at offset 8 of every page (one copy-on-write
 * fault a page), checks that it sees the pre-fork stamps and its own, reports through a pipe and exits. The parent
 * waits for it, then writes a stamp at offset 16 of every page and checks that it sees the pre-fork stamps, its own,
 * and none of the child's. Each write loop is measured with getrusage(RUSAGE_SELF) deltas (CPU time, ru_minflt for
 * the faults) and CLOCK_MONOTONIC. Where /proc/self/pagemap shows frame numbers (CAP_SYS_ADMIN), the parent counts
 * the pages whose frame changed across its loop: the faults that copied, not reused, the page.
 *
 * Prints one line of key=value pairs (all integers; parent_copied is -1 where frame numbers are hidden) and exits 0,
 * or prints a message to stderr and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define SALT_POPULATE 0x1111222233334444ULL
#define SALT_CHILD 0x5555666677778888ULL
#define SALT_PARENT 0x9999aaaabbbbccccULL

struct loop_figures {
    int64_t faults;
    int64_t cpu_ns;
    int64_t wall_ns;
    int64_t mismatches;
};

static uint64_t stamp(uintptr_t address, uint64_t salt)
{
    return ((address * 0x9E3779B97F4A7C15ULL) ^ salt) | 1;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int64_t cpu_ns(const struct rusage *u)
{
    return ((int64_t)u->ru_utime.tv_sec + u->ru_stime.tv_sec) * 1000000000
        + ((int64_t)u->ru_utime.tv_usec + u->ru_stime.tv_usec) * 1000;
}

static void die(const char *what)
{
    fprintf(stderr, "fork_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Writes a stamp at word `word` of every page, timed; a fault a page is expected, ru_minflt counts them. */
static struct loop_figures write_loop(char *region, size_t pages, int word, uint64_t salt)
{
    struct rusage before, after;
    struct loop_figures f = { 0 };
    getrusage(RUSAGE_SELF, &before);
    int64_t start = now_ns();
    for (size_t i = 0; i < pages; i++) {
        uint64_t *p = (uint64_t *)(region + i * PAGE);
        p[word] = stamp((uintptr_t)p, salt);
    }
    f.wall_ns = now_ns() - start;
    getrusage(RUSAGE_SELF, &after);
    f.faults = after.ru_minflt - before.ru_minflt;
    f.cpu_ns = cpu_ns(&after) - cpu_ns(&before);
    return f;
}

/* Pages whose words 0, 8 and 16 (bytes) are not {pre-fork stamp, expected word 1, expected word 2}. */
static int64_t verify(char *region, size_t pages, uint64_t salt1, uint64_t salt2)
{
    int64_t bad = 0;
    for (size_t i = 0; i < pages; i++) {
        volatile uint64_t *p = (uint64_t *)(region + i * PAGE);
        uintptr_t a = (uintptr_t)p;
        if (p[0] != stamp(a, SALT_POPULATE) || p[1] != (salt1 ? stamp(a, salt1) : 0) || p[2] != (salt2 ? stamp(a, salt2) : 0))
            bad++;
    }
    return bad;
}

/* Frame numbers of the pages, or NULL where the kernel hides them (no CAP_SYS_ADMIN: it reports 0). */
static uint64_t *frames(char *region, size_t pages)
{
    int fd = open("/proc/self/pagemap", O_RDONLY);
    if (fd < 0)
        return NULL;
    uint64_t *entries = malloc(pages * sizeof(uint64_t));
    if (entries == NULL)
        die("malloc");
    off_t offset = (off_t)((uintptr_t)region / PAGE * sizeof(uint64_t));
    ssize_t n = pread(fd, entries, pages * sizeof(uint64_t), offset);
    close(fd);
    if (n != (ssize_t)(pages * sizeof(uint64_t))) {
        free(entries);
        return NULL;
    }
    for (size_t i = 0; i < pages; i++) {
        entries[i] &= (1ULL << 55) - 1;
        if (entries[i] == 0) {
            free(entries);
            return NULL;
        }
    }
    return entries;
}

int main(int argc, char **argv)
{
    long mib = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (mib < 1 || mib > 1 << 20) {
        fprintf(stderr, "usage: fork_bench MIB (1 to 1048576)\n");
        return 1;
    }
    size_t length = (size_t)mib << 20;
    size_t pages = length / PAGE;
    char *region = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED)
        die("mmap");
    if (madvise(region, length, MADV_NOHUGEPAGE) != 0)
        die("madvise(MADV_NOHUGEPAGE)");
    for (size_t i = 0; i < pages; i++) {
        uint64_t *p = (uint64_t *)(region + i * PAGE);
        p[0] = stamp((uintptr_t)p, SALT_POPULATE);
    }
    uint64_t *before = frames(region, pages);

    int channel[2];
    if (pipe(channel) != 0)
        die("pipe");
    fflush(stdout);
    int64_t start = now_ns();
    pid_t child = fork();
    int64_t fork_ns = now_ns() - start;
    if (child < 0)
        die("fork");
    if (child == 0) {
        close(channel[0]);
        struct loop_figures f = write_loop(region, pages, 1, SALT_CHILD);
        f.mismatches = verify(region, pages, SALT_CHILD, 0);
        _exit(write(channel[1], &f, sizeof f) == sizeof f ? 0 : 1);
    }
    close(channel[1]);
    struct loop_figures c;
    ssize_t got = read(channel[0], &c, sizeof c);
    int status;
    if (waitpid(child, &status, 0) != child)
        die("waitpid");
    if (got != sizeof c || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "fork_bench: the child failed (status 0x%x)\n", status);
        return 1;
    }

    struct loop_figures p = write_loop(region, pages, 2, SALT_PARENT);
    p.mismatches = verify(region, pages, 0, SALT_PARENT);
    int64_t copied = -1;
    uint64_t *after = before == NULL ? NULL : frames(region, pages);
    if (after != NULL) {
        copied = 0;
        for (size_t i = 0; i < pages; i++)
            copied += before[i] != after[i];
    }
    printf("pages=%zu fork_ns=%lld child_faults=%lld child_cpu_ns=%lld child_wall_ns=%lld child_mismatches=%lld "
           "parent_faults=%lld parent_cpu_ns=%lld parent_wall_ns=%lld parent_mismatches=%lld parent_copied=%lld\n",
        pages, (long long)fork_ns, (long long)c.faults, (long long)c.cpu_ns, (long long)c.wall_ns, (long long)c.mismatches,
        (long long)p.faults, (long long)p.cpu_ns, (long long)p.wall_ns, (long long)p.mismatches, (long long)copied);
    return 0;
}
