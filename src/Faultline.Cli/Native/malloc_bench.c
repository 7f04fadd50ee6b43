/*
 * The host kernel's side of `faultline bench --workload malloc`: the same touching threads and the same
 * allocator-like mutating threads as the Faultline rows, on the real brk, mmap, mremap, madvise and munmap, so that
 * the kernel row is the kernel's own (a .NET process cannot move its program break: the runtime's malloc uses it).
 *
 *   malloc_bench TOUCHERS MUTATORS
 *
 * Touchers: map 128 MiB private anonymous, write a stamp at the start of every page (one first-touch fault a page),
 * read the stamps back, unmap; loop. Mutators: the script of MallocWorkload.cs, step for step:
 *   1. allocate a 64-256 KiB chunk from the brk heap (one heap for all mutators, as glibc's main arena, under a
 *      mutex): the first free chunk that fits, else carved from the top, moving the break with brk() when it is
 *      short; stamp its pages;
 *   2. mmap a 256 KiB-2 MiB block (above M_MMAP_THRESHOLD), stamp it; mremap(MREMAP_MAYMOVE) it to twice the size
 *      (realloc of a large block) and check that the stamps moved with it; stamp the new half; madvise(MADV_DONTNEED)
 *      the middle half (a freed chunk given back), check that it reads zero, stamp it again (reused); check the whole
 *      block; munmap;
 *   3. check the chunk (other mutators moved the break meanwhile) and free it: it merges with free neighbours, a free
 *      chunk at the top of the heap is popped, and the break comes down once 128 KiB (M_TRIM_THRESHOLD) lie free
 *      above the top.
 * Transparent huge pages are off for the process (PR_SET_THP_DISABLE): 4 KiB pages, as Faultline.
 *
 * Nothing here calls malloc once the threads run (output goes through write(2)): glibc's main arena would move the
 * break under the mutators' heap.
 *
 * Commands on stdin, one byte each: 's' prints one line of cumulative key=value integers (ns, toucher_faults,
 * toucher_iterations, toucher_cpu_ns, mutator_ops, mutator_iterations, brk_calls, moves, mismatches); 'q' (or end
 * of input) stops the threads, prints "done mismatches=N" and exits 0. A failed system call prints a message to
 * stderr and exits 1; the first wrong value read is described on stderr at exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define REGION (128UL << 20)
#define HEAP_STEP (64UL << 10)
#define TRIM_THRESHOLD (128UL << 10)
#define BLOCK_MIN (256UL << 10)
#define REUSE_SALT 0x5EE5A11CULL
#define MAX_THREADS 1024

/* One thread's counters: written by that thread only (relaxed stores), read by the main thread (relaxed loads). */
struct counters {
    int64_t faults;
    int64_t iterations;
    int64_t ops;
    int64_t brk_calls;
    int64_t moves;
    int64_t mismatches;
    char pad[16];
};

struct worker {
    pthread_t thread;
    int index;
    struct counters c;
};

struct chunk {
    uintptr_t start;
    size_t length;
    int freed;
};

static struct worker touchers[MAX_THREADS];
static struct worker mutators[MAX_THREADS];
static int toucher_count, mutator_count;
/* Set by the main thread at 'q' (release), read by the workers between pages (acquire). */
static int stop;

/* The brk heap: chunks in address order tiling [heap_start, heap_top), and the break, under the arena mutex. */
static pthread_mutex_t arena_lock = PTHREAD_MUTEX_INITIALIZER;
static struct chunk chunks[2 * MAX_THREADS + 1];
static int chunk_count;
static uintptr_t heap_start, heap_top, heap_break;

static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char first_error[256];

static uint64_t stamp(uintptr_t address, uint64_t salt)
{
    return ((address * 0x9E3779B97F4A7C15ULL) ^ salt) | 1;
}

/* WorkloadSizes.Salt. */
static uint64_t salt_of(int worker, int64_t iteration)
{
    return ((uint64_t)worker << 48) ^ ((uint64_t)iteration * 0x5DEECE66DULL) ^ 0x12345678ULL;
}

static int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void put(const char *text)
{
    size_t length = strlen(text);
    while (length > 0) {
        ssize_t n = write(1, text, length);
        if (n <= 0)
            _exit(1);
        text += n;
        length -= (size_t)n;
    }
}

static void die(const char *what)
{
    char line[256];
    snprintf(line, sizeof line, "malloc_bench: %s: %s\n", what, strerror(errno));
    ssize_t ignored = write(2, line, strlen(line));
    (void)ignored;
    _exit(1);
}

static void bump(int64_t *counter, int64_t by)
{
    __atomic_store_n(counter, *counter + by, __ATOMIC_RELAXED);
}

static int64_t get(const int64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

static void fail(struct counters *c, int64_t bad, const char *what, uintptr_t address)
{
    if (bad == 0)
        return;
    bump(&c->mismatches, bad);
    pthread_mutex_lock(&error_lock);
    if (first_error[0] == 0)
        snprintf(first_error, sizeof first_error, "malloc_bench: %lld page(s) wrong: %s at 0x%lx\n", (long long)bad, what,
            (unsigned long)address);
    pthread_mutex_unlock(&error_lock);
}

/* Writes stamp(page, salt) at the start of each page; counts them as faults when `faults` is set. */
static void stamp_pages(uintptr_t address, size_t pages, uint64_t salt, int64_t *faults)
{
    for (size_t i = 0; i < pages; i++) {
        uintptr_t page = address + i * PAGE;
        *(uint64_t *)page = stamp(page, salt);
        if (faults)
            bump(faults, 1);
    }
}

/* Pages of [address, +pages) whose first word is not stamp(origin + i * PAGE, salt): origin is where they were written. */
static int64_t wrong_pages(uintptr_t address, size_t pages, uintptr_t origin, uint64_t salt)
{
    int64_t bad = 0;
    for (size_t i = 0; i < pages; i++)
        bad += *(volatile uint64_t *)(address + i * PAGE) != stamp(origin + i * PAGE, salt);
    return bad;
}

static int stopping(void)
{
    return __atomic_load_n(&stop, __ATOMIC_ACQUIRE);
}

static void *toucher(void *argument)
{
    struct worker *w = argument;
    size_t pages = REGION / PAGE;
    for (int64_t iteration = 1; !stopping(); iteration++) {
        uint64_t salt = salt_of(w->index, iteration);
        char *region = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED)
            die("mmap (toucher)");
        size_t done = 0;
        /* At the end the loop may stop mid-region: counted faults are per page, so nothing is lost or invented. */
        while (done < pages && !stopping()) {
            size_t n = pages - done < 1024 ? pages - done : 1024;
            stamp_pages((uintptr_t)region + done * PAGE, n, salt, &w->c.faults);
            done += n;
        }
        if (done == pages) {
            fail(&w->c, wrong_pages((uintptr_t)region, pages, (uintptr_t)region, salt), "toucher region", (uintptr_t)region);
            bump(&w->c.iterations, 1);
        }
        if (munmap(region, REGION) != 0)
            die("munmap (toucher)");
    }
    return NULL;
}

static void move_break(uintptr_t to, struct counters *c)
{
    if (brk((void *)to) != 0)
        die("brk");
    heap_break = to;
    bump(&c->brk_calls, 1);
    bump(&c->ops, 1);
}

/*
 * Takes the first free chunk at least `length` long (whole: the heap never splits one), else carves `length` bytes
 * from the top, moving the break up when it is short.
 */
static uintptr_t arena_allocate(size_t length, struct counters *c)
{
    pthread_mutex_lock(&arena_lock);
    for (int i = 0; i < chunk_count; i++) {
        if (chunks[i].freed && chunks[i].length >= length) {
            chunks[i].freed = 0;
            pthread_mutex_unlock(&arena_lock);
            return chunks[i].start;
        }
    }
    uintptr_t start = heap_top;
    if (start + length > heap_break)
        move_break(start + length, c);
    chunks[chunk_count++] = (struct chunk){ start, length, 0 };
    heap_top = start + length;
    pthread_mutex_unlock(&arena_lock);
    return start;
}

static void remove_chunk(int i)
{
    memmove(&chunks[i], &chunks[i + 1], (size_t)(chunk_count - i - 1) * sizeof chunks[0]);
    chunk_count--;
}

/*
 * Frees the chunk at `start` and merges it with free neighbours (the chunks tile [heap_start, heap_top), so at most
 * one free chunk lies between two in use and the list stays under twice the mutators); a free chunk at the top is
 * popped, and the break comes down once TRIM_THRESHOLD bytes lie free above the top.
 */
static void arena_free(uintptr_t start, struct counters *c)
{
    pthread_mutex_lock(&arena_lock);
    int i = 0;
    while (chunks[i].start != start)
        i++;
    chunks[i].freed = 1;
    if (i + 1 < chunk_count && chunks[i + 1].freed) {
        chunks[i].length += chunks[i + 1].length;
        remove_chunk(i + 1);
    }
    if (i > 0 && chunks[i - 1].freed) {
        chunks[i - 1].length += chunks[i].length;
        remove_chunk(i);
    }
    if (chunk_count > 0 && chunks[chunk_count - 1].freed)
        chunk_count--;
    heap_top = chunk_count == 0 ? heap_start : chunks[chunk_count - 1].start + chunks[chunk_count - 1].length;
    if (heap_break - heap_top >= TRIM_THRESHOLD)
        move_break(heap_top, c);
    pthread_mutex_unlock(&arena_lock);
}

static void mutator_iteration(struct worker *w, int64_t k)
{
    struct counters *c = &w->c;
    uint64_t salt = salt_of(w->index, k);

    size_t heap_length = HEAP_STEP * (size_t)(1 + k % 4);
    uintptr_t small = arena_allocate(heap_length, c);
    stamp_pages(small, heap_length / PAGE, salt, NULL);

    size_t length = BLOCK_MIN << (k % 4);
    size_t pages = length / PAGE;
    char *a = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED)
        die("mmap (block)");
    bump(&c->ops, 1);
    stamp_pages((uintptr_t)a, pages, salt, NULL);
    char *b = mremap(a, length, 2 * length, MREMAP_MAYMOVE);
    if (b == MAP_FAILED)
        die("mremap");
    bump(&c->ops, 1);
    if (b != a)
        bump(&c->moves, 1);
    uintptr_t ua = (uintptr_t)a, ub = (uintptr_t)b, half = length / 2;
    fail(c, wrong_pages(ub, pages, ua, salt), "block after mremap", ub);
    stamp_pages(ub + length, pages, salt, NULL);
    if (madvise(b + half, length, MADV_DONTNEED) != 0)
        die("madvise(MADV_DONTNEED)");
    bump(&c->ops, 1);
    fail(c, *(volatile uint64_t *)(ub + half) != 0, "block after MADV_DONTNEED (not zero)", ub + half);
    stamp_pages(ub + half, pages, salt ^ REUSE_SALT, NULL);
    fail(c, wrong_pages(ub, half / PAGE, ua, salt), "block, moved part", ub);
    fail(c, wrong_pages(ub + half, pages, ub + half, salt ^ REUSE_SALT), "block, reused part", ub + half);
    fail(c, wrong_pages(ub + half + length, half / PAGE, ub + half + length, salt), "block, grown part", ub + half + length);
    if (munmap(b, 2 * length) != 0)
        die("munmap (block)");
    bump(&c->ops, 1);

    fail(c, wrong_pages(small, heap_length / PAGE, small, salt), "heap chunk", small);
    arena_free(small, c);
    bump(&c->iterations, 1);
}

static void *mutator(void *argument)
{
    struct worker *w = argument;
    for (int64_t k = 0; !stopping(); k++)
        mutator_iteration(w, k);
    return NULL;
}

static void snapshot(void)
{
    int64_t sums[8] = { 0 };
    for (int i = 0; i < toucher_count; i++) {
        sums[0] += get(&touchers[i].c.faults);
        sums[1] += get(&touchers[i].c.iterations);
        sums[7] += get(&touchers[i].c.mismatches);
        clockid_t clock;
        struct timespec t;
        if (pthread_getcpuclockid(touchers[i].thread, &clock) == 0 && clock_gettime(clock, &t) == 0)
            sums[2] += (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
    }
    for (int i = 0; i < mutator_count; i++) {
        sums[3] += get(&mutators[i].c.ops);
        sums[4] += get(&mutators[i].c.iterations);
        sums[5] += get(&mutators[i].c.brk_calls);
        sums[6] += get(&mutators[i].c.moves);
        sums[7] += get(&mutators[i].c.mismatches);
    }
    char line[512];
    snprintf(line, sizeof line,
        "ns=%lld toucher_faults=%lld toucher_iterations=%lld toucher_cpu_ns=%lld mutator_ops=%lld mutator_iterations=%lld "
        "brk_calls=%lld moves=%lld mismatches=%lld\n",
        (long long)now_ns(), (long long)sums[0], (long long)sums[1], (long long)sums[2], (long long)sums[3], (long long)sums[4],
        (long long)sums[5], (long long)sums[6], (long long)sums[7]);
    put(line);
}

int main(int argc, char **argv)
{
    long t = argc == 3 ? strtol(argv[1], NULL, 10) : -1;
    long m = argc == 3 ? strtol(argv[2], NULL, 10) : -1;
    if (t < 0 || t > MAX_THREADS || m < 0 || m > MAX_THREADS || t + m == 0) {
        const char *usage = "usage: malloc_bench TOUCHERS MUTATORS (0 to 1024 each, not both 0)\n";
        ssize_t ignored = write(2, usage, strlen(usage));
        (void)ignored;
        return 1;
    }
    toucher_count = (int)t;
    mutator_count = (int)m;
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
        die("prctl(PR_SET_THP_DISABLE)");
    /* Every malloc of thread creation (thread-local storage) happens before the heap's start is taken. */
    pthread_mutex_lock(&arena_lock);
    for (int i = 0; i < toucher_count; i++) {
        touchers[i].index = i;
        if (pthread_create(&touchers[i].thread, NULL, toucher, &touchers[i]) != 0)
            die("pthread_create");
    }
    for (int i = 0; i < mutator_count; i++) {
        mutators[i].index = toucher_count + i;
        if (pthread_create(&mutators[i].thread, NULL, mutator, &mutators[i]) != 0)
            die("pthread_create");
    }
    heap_start = ((uintptr_t)sbrk(0) + PAGE - 1) & ~(PAGE - 1);
    heap_top = heap_start;
    heap_break = (uintptr_t)sbrk(0);
    pthread_mutex_unlock(&arena_lock);

    char command;
    while (read(0, &command, 1) == 1 && command != 'q') {
        if (command == 's')
            snapshot();
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < toucher_count; i++)
        pthread_join(touchers[i].thread, NULL);
    for (int i = 0; i < mutator_count; i++)
        pthread_join(mutators[i].thread, NULL);
    int64_t bad = 0;
    for (int i = 0; i < toucher_count; i++)
        bad += touchers[i].c.mismatches;
    for (int i = 0; i < mutator_count; i++)
        bad += mutators[i].c.mismatches;
    if (first_error[0] != 0) {
        ssize_t ignored = write(2, first_error, strlen(first_error));
        (void)ignored;
    }
    char line[64];
    snprintf(line, sizeof line, "done mismatches=%lld\n", (long long)bad);
    put(line);
    return 0;
}
