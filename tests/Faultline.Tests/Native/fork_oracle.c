/*
 * fork_oracle: the host kernel's answer for fork() with copy-on-write.
 *
 * Usage: fork_oracle REGION_START REGION_BYTES [SCRIPT]   (numbers in C syntax, e.g. 0x100000000000; script from
 * the file or stdin)
 *
 * A coordinator reads the script and sends each step to the process that runs it; process 0 reserves the region
 * [REGION_START, +REGION_BYTES) PROT_NONE with MAP_FIXED_NOREPLACE, and "fork P C" makes process P call fork(), the
 * child becoming process C. Every process has its own command and acknowledgement pipe, created by the coordinator
 * before process 0 exists, so each step runs in its process strictly after the one before.
 *
 * Script, one step a line (addresses and lengths absolute, any C integer syntax):
 *   map P ADDR LEN PROT        mmap(MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED)
 *   smap P ADDR LEN PROT       mmap(MAP_SHARED|MAP_ANONYMOUS|MAP_FIXED)
 *   protect P ADDR LEN PROT    mprotect
 *   munmap P ADDR LEN
 *   advise P ADDR LEN ADVICE   madvise (ADVICE is the MADV_* number)
 *   write P ADDR VALUE         a one-byte store
 *   read P ADDR                a one-byte load
 *   fork P CHILD
 *   exit P
 *   report ADDR...             every live process, in process order: maps, smaps (with the fork flags of each
 *                              VMA), then for each ADDR whether a page-table entry maps it (the pagemap present
 *                              bit) and its byte
 *
 * Output, one observation a line, "STEP PROC KIND KEY VALUE" (no token holds a space):
 *   S P map|smap|protect|munmap|advise ADDR+LEN ERRNO
 *   S P write ADDR ok|SEGV_MAPERR|SEGV_ACCERR
 *   S P read ADDR VALUE|SEGV_MAPERR|SEGV_ACCERR
 *   S P fork CHILD ok       S P exit - ok
 *   S P maps - START-END:PERMS,...   (or "none")
 *   S P smaps START-END:FIELD KB     for Rss Anonymous Shared_Clean Shared_Dirty Private_Clean Private_Dirty Pss
 *   S P vmflags START-END FLAGS      the VmFlags that fork reads, "dc" (VM_DONTCOPY) and "wf" (VM_WIPEONFORK),
 *                                    joined by commas, or "-"
 *   S P present ADDR 0|1
 *   S P value ADDR VALUE|SEGV_MAPERR|SEGV_ACCERR
 *   -1 -1 fact zero_page_on_read 0|1   (probed once in the coordinator, before the script)
 * Addresses and ranges are lower-case hex without 0x, values and sizes decimal. A line "fatal ..." and exit
 * status 2 mean the script or the host failed; the coordinator then kills every process it started.
 *
 * Transparent huge pages are turned off for these processes (PR_SET_THP_DISABLE) so that every fault maps one base
 * page, on any host's THP setting.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROCS 16
#define MAX_LINE 4000 /* below PIPE_BUF: a command is written to its pipe in one piece */
#define MAX_ARGS 64
#define ACK_TIMEOUT_MS 10000
#define ACK_CRASHED (-2)

static const char *const smaps_fields[] = {
    "Rss", "Anonymous", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Pss",
};
#define SMAPS_FIELDS (sizeof smaps_fields / sizeof smaps_fields[0])

static uintptr_t region_start, region_end;
static int cmd_pipe[MAX_PROCS][2], ack_pipe[MAX_PROCS][2];
static pid_t pids[MAX_PROCS];
static int live[MAX_PROCS];
static int self_id = -1; /* the worker this process is; -1 in the coordinator */

static sigjmp_buf fault_jump;
static volatile sig_atomic_t fault_armed, fault_code;

static void fatal(const char *what, long step)
{
    printf("fatal %s (step %ld, errno %d)\n", what, step, errno);
    fflush(stdout);
}

/* A probed access jumps back to its caller; any other SIGSEGV tells the coordinator this process crashed. */
static void on_segv(int sig, siginfo_t *info, void *context)
{
    (void)sig;
    (void)context;
    if (fault_armed) {
        fault_armed = 0;
        fault_code = info->si_code;
        siglongjmp(fault_jump, 1);
    }
    if (self_id >= 0) {
        int64_t crashed = ACK_CRASHED;
        ssize_t written = write(ack_pipe[self_id][1], &crashed, sizeof crashed);
        (void)written;
    }
    _exit(3);
}

/* One byte at addr, loaded or stored with a real CPU access; returns 0 or the SIGSEGV si_code. */
static int access_byte(uintptr_t addr, int store, unsigned char *value)
{
    if (sigsetjmp(fault_jump, 1)) {
        return fault_code;
    }
    fault_armed = 1;
    if (store) {
        *(volatile unsigned char *)addr = *value;
    } else {
        *value = *(volatile unsigned char *)addr;
    }
    fault_armed = 0;
    return 0;
}

static const char *outcome(int code)
{
    return code == SEGV_MAPERR ? "SEGV_MAPERR" : code == SEGV_ACCERR ? "SEGV_ACCERR" : "SEGV_OTHER";
}

static void print_access(long step, const char *kind, uintptr_t addr, int code, int show_value, unsigned char value)
{
    if (code != 0) {
        printf("%ld %d %s %" PRIxPTR " %s\n", step, self_id, kind, addr, outcome(code));
    } else if (show_value) {
        printf("%ld %d %s %" PRIxPTR " %u\n", step, self_id, kind, addr, value);
    } else {
        printf("%ld %d %s %" PRIxPTR " ok\n", step, self_id, kind, addr);
    }
}

/* The VMAs of the region from /proc/self/maps, clipped to it, as one token. */
static void print_maps(long step)
{
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512], perms[8];
    uintptr_t start, end;
    int any = 0;
    if (maps == NULL) {
        fatal("open /proc/self/maps", step);
        exit(2);
    }
    printf("%ld %d maps - ", step, self_id);
    while (fgets(line, sizeof line, maps) != NULL) {
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &start, &end, perms) != 3 || end <= region_start
            || start >= region_end) {
            continue;
        }
        printf("%s%" PRIxPTR "-%" PRIxPTR ":%s", any ? "," : "", start < region_start ? region_start : start,
               end > region_end ? region_end : end, perms);
        any = 1;
    }
    printf("%s\n", any ? "" : "none");
    fclose(maps);
}

/* The VmFlags mnemonics fork acts on, from a "VmFlags:" line, as one token. */
static void print_fork_flags(long step, uintptr_t vma_start, uintptr_t vma_end, const char *line)
{
    static const char *const fork_flags[] = { " dc", " wf" };
    int any = 0;
    printf("%ld %d vmflags %" PRIxPTR "-%" PRIxPTR " ", step, self_id, vma_start, vma_end);
    for (size_t i = 0; i < sizeof fork_flags / sizeof fork_flags[0]; i++) {
        const char *found = strstr(line, fork_flags[i]);
        if (found != NULL && (found[3] == ' ' || found[3] == '\n' || found[3] == '\0')) {
            printf("%s%s", any ? "," : "", fork_flags[i] + 1);
            any = 1;
        }
    }
    printf("%s\n", any ? "" : "-");
}

/* The compared smaps fields and fork flags of each VMA of the region, in the order the kernel lists them. */
static void print_smaps(long step)
{
    FILE *smaps = fopen("/proc/self/smaps", "r");
    char line[512], name[64];
    uintptr_t start, end, vma_start = 0, vma_end = 0;
    unsigned long kb;
    int in_region = 0;
    if (smaps == NULL) {
        fatal("open /proc/self/smaps", step);
        exit(2);
    }
    while (fgets(line, sizeof line, smaps) != NULL) {
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &start, &end) == 2 && strchr(line, ':') > strchr(line, ' ')) {
            /* A header line: "start-end perms offset dev inode name" (its only colon is in the device). */
            in_region = end > region_start && start < region_end;
            vma_start = start < region_start ? region_start : start;
            vma_end = end > region_end ? region_end : end;
            continue;
        }
        if (in_region && strncmp(line, "VmFlags:", 8) == 0) {
            print_fork_flags(step, vma_start, vma_end, line + 8);
            continue;
        }
        if (!in_region || sscanf(line, "%63[^:]: %lu kB", name, &kb) != 2) {
            continue;
        }
        for (size_t i = 0; i < SMAPS_FIELDS; i++) {
            if (strcmp(name, smaps_fields[i]) == 0) {
                printf("%ld %d smaps %" PRIxPTR "-%" PRIxPTR ":%s %lu\n", step, self_id, vma_start, vma_end, name, kb);
            }
        }
    }
    fclose(smaps);
}

/* The pagemap present bit (63) of the page at addr: a page-table entry maps a frame there (the zero page included).
 * Opened afresh each time: an open pagemap stays bound to the mm of the process that opened it, across fork. */
static int present(long step, uintptr_t addr)
{
    int pagemap = open("/proc/self/pagemap", O_RDONLY);
    uint64_t entry;
    ssize_t got = pagemap < 0 ? -1 : pread(pagemap, &entry, sizeof entry, (off_t)(addr / 4096 * sizeof entry));
    if (pagemap >= 0) {
        close(pagemap);
    }
    if (got != sizeof entry) {
        fatal("read /proc/self/pagemap", step);
        exit(2);
    }
    return (int)(entry >> 63);
}

static void ack(int64_t value)
{
    fflush(stdout);
    if (write(ack_pipe[self_id][1], &value, sizeof value) != sizeof value) {
        _exit(2);
    }
}

/* Reads one command line (the coordinator sends one and waits for its acknowledgement, so no more is there). */
static int read_command(char *line, size_t size)
{
    size_t used = 0;
    while (used == 0 || line[used - 1] != '\n') {
        ssize_t got = read(cmd_pipe[self_id][0], line + used, size - 1 - used);
        if (got <= 0 || (size_t)got >= size - 1 - used) {
            return -1;
        }
        used += (size_t)got;
    }
    line[used - 1] = '\0';
    return 0;
}

static int split(char *line, char **args)
{
    int count = 0;
    for (char *token = strtok(line, " \t"); token != NULL && count < MAX_ARGS; token = strtok(NULL, " \t")) {
        args[count++] = token;
    }
    return count;
}

static uintptr_t number(const char *text)
{
    return (uintptr_t)strtoull(text, NULL, 0);
}

/* The tokens a command needs, its step and verb included. */
static int arguments(const char *verb)
{
    static const struct {
        const char *verb;
        int count;
    } table[] = { { "map", 6 }, { "smap", 6 }, { "protect", 6 }, { "munmap", 5 }, { "advise", 6 }, { "write", 5 }, { "read", 4 }, { "fork", 4 },
                  { "exit", 3 }, { "report", 2 }, { "quit", 2 } };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        if (strcmp(verb, table[i].verb) == 0) {
            return table[i].count;
        }
    }
    return 2;
}

/* Runs commands "STEP VERB ARGS..." in this process until "quit" or "exit". */
static void worker(void)
{
    char line[MAX_LINE], *args[MAX_ARGS];
    for (;;) {
        if (read_command(line, sizeof line) != 0) {
            _exit(2);
        }
        int argc = split(line, args);
        long step = strtol(args[0], NULL, 10);
        const char *verb = argc > 1 ? args[1] : "";
        int result = 0;
        if (argc < arguments(verb)) {
            fatal("too few arguments", step);
            result = -1;
        } else if (strcmp(verb, "quit") == 0) {
            ack(0);
            _exit(0);
        } else if (strcmp(verb, "map") == 0 || strcmp(verb, "smap") == 0 || strcmp(verb, "protect") == 0
                   || strcmp(verb, "munmap") == 0) {
            uintptr_t addr = number(args[3]);
            size_t len = number(args[4]);
            if (verb[1] == 'a' || verb[0] == 's') {
                int prot = (int)number(args[5]);
                int type = verb[0] == 's' ? MAP_SHARED : MAP_PRIVATE;
                result = mmap((void *)addr, len, prot, type | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ? errno : 0;
            } else if (verb[0] == 'p') {
                result = mprotect((void *)addr, len, (int)number(args[5])) != 0 ? errno : 0;
            } else {
                result = munmap((void *)addr, len) != 0 ? errno : 0;
            }
            printf("%ld %d %s %" PRIxPTR "+%zx %d\n", step, self_id, verb, addr, len, result);
        } else if (strcmp(verb, "advise") == 0) {
            uintptr_t addr = number(args[3]);
            size_t len = number(args[4]);
            result = madvise((void *)addr, len, (int)number(args[5])) != 0 ? errno : 0;
            printf("%ld %d %s %" PRIxPTR "+%zx %d\n", step, self_id, verb, addr, len, result);
        } else if (strcmp(verb, "write") == 0 || strcmp(verb, "read") == 0) {
            uintptr_t addr = number(args[3]);
            unsigned char value = verb[0] == 'w' ? (unsigned char)number(args[4]) : 0;
            int code = access_byte(addr, verb[0] == 'w', &value);
            print_access(step, verb, addr, code, verb[0] == 'r', value);
        } else if (strcmp(verb, "fork") == 0) {
            int child = (int)number(args[3]);
            printf("%ld %d fork %d ok\n", step, self_id, child);
            fflush(stdout); /* nothing buffered may be copied into the child */
            pid_t pid = fork();
            if (pid == 0) {
                self_id = child;
                continue;
            }
            if (pid < 0) {
                fatal("fork", step);
            }
            ack(pid < 0 ? -1 : pid);
            continue;
        } else if (strcmp(verb, "exit") == 0) {
            /* exit_mmap runs after the acknowledgement; unmapping first makes the next step see its effect. */
            printf("%ld %d exit - ok\n", step, self_id);
            result = munmap((void *)region_start, region_end - region_start);
            ack(result);
            _exit(0);
        } else if (strcmp(verb, "report") == 0) {
            print_maps(step);
            print_smaps(step);
            for (int i = 2; i < argc; i++) {
                uintptr_t addr = number(args[i]);
                unsigned char value = 0;
                printf("%ld %d present %" PRIxPTR " %d\n", step, self_id, addr, present(step, addr));
                int code = access_byte(addr, 0, &value);
                print_access(step, "value", addr, code, 1, value);
            }
        } else {
            fatal("unknown command", step);
            result = -1;
        }
        ack(result);
    }
}

static void kill_all(void)
{
    for (int i = 0; i < MAX_PROCS; i++) {
        if (pids[i] > 0) {
            kill(pids[i], SIGKILL);
        }
    }
}

/* Waits for a worker's acknowledgement: a status, or a forked child's pid. */
static int64_t wait_ack(int id, long step)
{
    struct pollfd ready = { .fd = ack_pipe[id][0], .events = POLLIN };
    int64_t value;
    if (poll(&ready, 1, ACK_TIMEOUT_MS) != 1 || read(ack_pipe[id][0], &value, sizeof value) != sizeof value
        || value == ACK_CRASHED) {
        fatal("no acknowledgement", step);
        kill_all();
        exit(2);
    }
    return value;
}

/* Sends "STEP COMMAND" to a worker and waits for its acknowledgement. */
static int64_t send(int id, long step, const char *command)
{
    char line[MAX_LINE + 32];
    int length = snprintf(line, sizeof line, "%ld %s\n", step, command);
    if (length >= MAX_LINE || write(cmd_pipe[id][1], line, (size_t)length) != length) {
        fatal("send", step);
        kill_all();
        exit(2);
    }
    return wait_ack(id, step);
}

/* Whether a read fault on untouched private anonymous memory maps the zero page: its Rss stays 0. */
static int probe_zero_page(void)
{
    char line[512];
    uintptr_t start, end;
    unsigned long kb = 0;
    int in_page = 0;
    volatile unsigned char *page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FILE *smaps = fopen("/proc/self/smaps", "r");
    if (page == MAP_FAILED || smaps == NULL) {
        fatal("zero-page probe", -1);
        exit(2);
    }
    (void)page[0];
    while (fgets(line, sizeof line, smaps) != NULL) {
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " ", &start, &end) == 2 && strchr(line, ':') > strchr(line, ' ')) {
            in_page = start == (uintptr_t)page;
        } else if (in_page && sscanf(line, "Rss: %lu kB", &kb) == 1) {
            break;
        }
    }
    fclose(smaps);
    munmap((void *)page, 4096);
    return kb == 0;
}

int main(int argc, char **argv)
{
    char line[MAX_LINE], command[MAX_LINE], *args[MAX_ARGS];
    FILE *script = argc > 3 ? fopen(argv[3], "r") : stdin;
    struct sigaction segv = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO };
    long step = 0;
    if (argc < 3 || script == NULL) {
        fprintf(stderr, "usage: %s REGION_START REGION_BYTES [SCRIPT]\n", argv[0]);
        return 2;
    }
    region_start = number(argv[1]);
    region_end = region_start + number(argv[2]);
    sigaction(SIGSEGV, &segv, NULL);
    /* Orphans (a process whose parent exited) are reaped here rather than by init. */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) {
        fatal("PR_SET_THP_DISABLE", -1);
        return 2;
    }
    printf("-1 -1 fact zero_page_on_read %d\n", probe_zero_page());
    for (int i = 0; i < MAX_PROCS; i++) {
        if (pipe(cmd_pipe[i]) != 0 || pipe(ack_pipe[i]) != 0) {
            fatal("pipe", -1);
            return 2;
        }
    }
    fflush(stdout);
    pids[0] = fork();
    if (pids[0] == 0) {
        self_id = 0;
        void *got = mmap((void *)region_start, region_end - region_start, PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
        if (got != (void *)region_start) {
            fatal("reserve the region", -1);
            ack(-1);
            _exit(2);
        }
        ack(0);
        worker();
    }
    live[0] = 1;
    if (pids[0] < 0 || wait_ack(0, -1) != 0) {
        fatal("start process 0", -1);
        kill_all();
        return 2;
    }
    while (fgets(line, sizeof line, script) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        strcpy(command, line);
        int count = split(line, args);
        if (count == 0 || args[0][0] == '#') {
            continue;
        }
        if (strcmp(args[0], "report") == 0) {
            for (int i = 0; i < MAX_PROCS; i++) {
                if (live[i]) {
                    send(i, step, command);
                }
            }
            step++;
            continue;
        }
        int id = count > 1 ? atoi(args[1]) : -1;
        if (id < 0 || id >= MAX_PROCS || !live[id]) {
            fatal("no such process", step);
            kill_all();
            return 2;
        }
        int64_t value = send(id, step, command);
        if (strcmp(args[0], "fork") == 0) {
            int child = count > 2 ? atoi(args[2]) : -1;
            if (value <= 0 || child < 0 || child >= MAX_PROCS || live[child]) {
                fatal("fork", step);
                kill_all();
                return 2;
            }
            pids[child] = (pid_t)value;
            live[child] = 1;
        } else if (strcmp(args[0], "exit") == 0) {
            live[id] = 0;
            pids[id] = 0;
        }
        step++;
    }
    for (int i = MAX_PROCS - 1; i >= 0; i--) {
        if (live[i]) {
            send(i, step, "quit");
        }
    }
    while (wait(NULL) > 0 || errno == EINTR) {
    }
    return 0;
}
