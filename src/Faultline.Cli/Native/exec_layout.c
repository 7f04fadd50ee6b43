/*
 * The host side of `faultline record`: runs programs with address-space randomisation off and reports the layout
 * the kernel builds at execve, which no system-call trace shows (the executable, ld.so, [stack], [vdso], [vvar] and
 * the start of the heap are all placed before the first traced call).
 *
 *   exec_layout run PROGRAM ARGS...   personality(ADDR_NO_RANDOMIZE), then execvp: the recorder runs strace so.
 *   exec_layout layout PROGRAM        forks a child that turns randomisation off, asks to be traced and execs
 *                                     PROGRAM; at the exec stop, before the new image runs one instruction, prints
 *                                     "start_brk 0x..." (field 47 of /proc/PID/stat), "stack_limit N" and
 *                                     "memlock_limit N" (RLIMIT_STACK and RLIMIT_MEMLOCK, -1 for unlimited), then
 *                                     "maps" and the child's /proc/PID/maps; then kills it. Exit 0, or 1 with a
 *                                     message on stderr.
 *
 * With randomisation off the layout at execve depends only on the program and the limits, so a second exec of the
 * same file reproduces the one the trace saw.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

static int no_randomize(void)
{
    int current = personality(0xffffffff);
    if (current == -1 || personality((unsigned long)current | ADDR_NO_RANDOMIZE) == -1) {
        fprintf(stderr, "exec_layout: personality: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static long long limit(int resource)
{
    struct rlimit r;
    if (getrlimit(resource, &r) != 0) {
        return -2;
    }
    return r.rlim_cur == RLIM_INFINITY ? -1 : (long long)r.rlim_cur;
}

/* Field 47 of /proc/PID/stat, counted after the ")" that ends the command name (which may hold spaces). */
static int start_brk(pid_t pid, unsigned long long *value)
{
    char path[64], buffer[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }
    size_t n = fread(buffer, 1, sizeof buffer - 1, f);
    fclose(f);
    buffer[n] = 0;
    char *p = strrchr(buffer, ')');
    if (p == NULL) {
        return -1;
    }
    p++;
    /* After ")" come fields 3, 4, ...: skip 44 of them to reach field 47. */
    for (int field = 3; field < 47; field++) {
        p = strchr(p + 1, ' ');
        if (p == NULL) {
            return -1;
        }
    }
    *value = strtoull(p + 1, NULL, 10);
    return 0;
}

static int layout(const char *program)
{
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "exec_layout: fork: %s\n", strerror(errno));
        return 1;
    }
    if (child == 0) {
        if (no_randomize() != 0 || ptrace(PTRACE_TRACEME, 0, NULL, NULL) != 0) {
            _exit(126);
        }
        char *argv[] = { (char *)program, NULL };
        char *envp[] = { NULL };
        execve(program, argv, envp);
        _exit(127);
    }
    int status;
    if (waitpid(child, &status, 0) != child || !WIFSTOPPED(status)) {
        fprintf(stderr, "exec_layout: %s did not stop at exec (status 0x%x)\n", program, status);
        return 1;
    }
    unsigned long long brk;
    if (start_brk(child, &brk) != 0) {
        fprintf(stderr, "exec_layout: cannot read /proc/%d/stat\n", (int)child);
        kill(child, SIGKILL);
        return 1;
    }
    printf("start_brk 0x%llx\nstack_limit %lld\nmemlock_limit %lld\nmaps\n", brk, limit(RLIMIT_STACK), limit(RLIMIT_MEMLOCK));
    char path[64], buffer[8192];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)child);
    FILE *maps = fopen(path, "r");
    int rc = 0;
    if (maps == NULL) {
        fprintf(stderr, "exec_layout: cannot open %s: %s\n", path, strerror(errno));
        rc = 1;
    } else {
        size_t n;
        while ((n = fread(buffer, 1, sizeof buffer, maps)) > 0) {
            fwrite(buffer, 1, n, stdout);
        }
        fclose(maps);
    }
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && strcmp(argv[1], "run") == 0) {
        if (no_randomize() != 0) {
            return 1;
        }
        execvp(argv[2], argv + 2);
        fprintf(stderr, "exec_layout: cannot run %s: %s\n", argv[2], strerror(errno));
        return 127;
    }
    if (argc == 3 && strcmp(argv[1], "layout") == 0) {
        return layout(argv[2]);
    }
    fprintf(stderr, "usage: exec_layout run PROGRAM ARGS... | exec_layout layout PROGRAM\n");
    return 2;
}
