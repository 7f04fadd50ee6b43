/*
 * stack_oracle: the host kernel's answer for stack expansion below MAP_GROWSDOWN mappings.
 *
 * Usage: stack_oracle REGION_START REGION_BYTES STACK_LIMIT MEMLOCK_LIMIT   (numbers in C syntax; MEMLOCK_LIMIT "-"
 * leaves RLIMIT_MEMLOCK and CAP_IPC_LOCK as they are, a number sets RLIMIT_MEMLOCK and drops CAP_IPC_LOCK); the
 * script on stdin.
 *
 * Stack expansion happens only on a real access by the process itself: process_vm_readv/writev and other remote
 * accesses go through get_user_pages, which no longer grows stacks (Linux 6.5), so this program touches the memory
 * with loads and stores and catches the SIGSEGV with sigsetjmp/siglongjmp on an alternate signal stack (RLIMIT_STACK
 * may be set lower than the program's own stack).
 *
 * Script, one step a line (addresses absolute):
 *   map ADDR LEN PROT FLAGS    mmap; FLAGS is the whole flags word (MAP_FIXED included by the script)
 *   munmap ADDR LEN
 *   protect ADDR LEN PROT      mprotect (PROT_GROWSDOWN allowed)
 *   write ADDR VALUE           a one-byte store
 *   read ADDR                  a one-byte load
 *   report                     the maps of the region, smaps Rss, Locked and VmFlags of its VMAs, the pagemap
 *                              present bit of each of its pages, VmLck
 *
 * Output, one line a step:
 *   S map|munmap|protect ERRNO
 *   S write ok|SEGV_MAPERR|SEGV_ACCERR
 *   S read VALUE|SEGV_MAPERR|SEGV_ACCERR
 *   S maps START-END:PERMS,...|none      (hex without 0x, the VMAs meeting the region, unclipped)
 *   S smaps START-END:RSS_KB:LOCKED_KB:FLAGS ...|none   (FLAGS: the VmFlags mnemonics joined by '+')
 *   S present BITS                        (one 0 or 1 a page of the region)
 *   S locked KB
 * A line "fatal ..." and exit status 2 mean the script or the host failed.
 *
 * Transparent huge pages are turned off (PR_SET_THP_DISABLE) so that every fault maps one base page.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PAGE 4096UL

static sigjmp_buf fault_jump;
static volatile sig_atomic_t fault_code;
static uint64_t region_start, region_bytes;

static void fatal(const char *what)
{
	printf("fatal %s (errno %d)\n", what, errno);
	fflush(stdout);
	exit(2);
}

static void on_segv(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	(void)context;
	fault_code = info->si_code;
	siglongjmp(fault_jump, 1);
}

static const char *fault_name(void)
{
	return fault_code == SEGV_ACCERR ? "SEGV_ACCERR" : "SEGV_MAPERR";
}

static uint64_t number(const char *text)
{
	char *end;
	errno = 0;
	uint64_t value = strtoull(text, &end, 0);
	if (errno != 0 || *end != '\0')
		fatal("bad number");
	return value;
}

/* Drops CAP_IPC_LOCK from the effective and permitted sets, so RLIMIT_MEMLOCK applies. */
static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	if (syscall(SYS_capget, &header, data) != 0)
		fatal("capget");
	data[0].effective &= ~(1U << CAP_IPC_LOCK);
	data[0].permitted &= ~(1U << CAP_IPC_LOCK);
	data[0].inheritable &= ~(1U << CAP_IPC_LOCK);
	if (syscall(SYS_capset, &header, data) != 0)
		fatal("capset");
}

static void report_maps(int step)
{
	FILE *maps = fopen("/proc/self/maps", "r");
	if (!maps)
		fatal("maps");
	char line[512];
	int any = 0;
	printf("%d maps ", step);
	while (fgets(line, sizeof line, maps)) {
		uint64_t start, end;
		char perms[5];
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s", &start, &end, perms) != 3)
			fatal("maps line");
		if (end <= region_start || start >= region_start + region_bytes)
			continue;
		printf("%s%" PRIx64 "-%" PRIx64 ":%s", any ? "," : "", start, end, perms);
		any = 1;
	}
	printf("%s\n", any ? "" : "none");
	fclose(maps);
}

static void report_smaps(int step)
{
	FILE *smaps = fopen("/proc/self/smaps", "r");
	if (!smaps)
		fatal("smaps");
	char line[512];
	int any = 0, in_region = 0;
	uint64_t start = 0, end = 0;
	long rss = -1, locked = -1;
	printf("%d smaps", step);
	while (fgets(line, sizeof line, smaps)) {
		uint64_t s, e;
		char perms[5];
		if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s", &s, &e, perms) == 3) {
			start = s;
			end = e;
			in_region = e > region_start && s < region_start + region_bytes;
			rss = locked = -1;
		} else if (in_region && strncmp(line, "Rss:", 4) == 0) {
			rss = strtol(line + 4, NULL, 10);
		} else if (in_region && strncmp(line, "Locked:", 7) == 0) {
			locked = strtol(line + 7, NULL, 10);
		} else if (in_region && strncmp(line, "VmFlags:", 8) == 0) {
			printf(" %" PRIx64 "-%" PRIx64 ":%ld:%ld:", start, end, rss, locked);
			int first = 1;
			for (char *flag = strtok(line + 8, " \n"); flag; flag = strtok(NULL, " \n")) {
				printf("%s%s", first ? "" : "+", flag);
				first = 0;
			}
			any = 1;
		}
	}
	printf("%s\n", any ? "" : " none");
	fclose(smaps);
}

static void report_present(int step)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		fatal("pagemap");
	uint64_t pages = region_bytes / PAGE;
	printf("%d present ", step);
	for (uint64_t i = 0; i < pages; i++) {
		uint64_t entry;
		if (pread(fd, &entry, sizeof entry, (off_t)((region_start / PAGE + i) * sizeof entry)) != sizeof entry)
			fatal("pagemap read");
		putchar((entry >> 63) & 1 ? '1' : '0');
	}
	putchar('\n');
	close(fd);
}

static void report_locked(int step)
{
	FILE *status = fopen("/proc/self/status", "r");
	if (!status)
		fatal("status");
	char line[256];
	long kb = -1;
	while (fgets(line, sizeof line, status))
		if (sscanf(line, "VmLck: %ld kB", &kb) == 1)
			break;
	fclose(status);
	printf("%d locked %ld\n", step, kb);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		fatal("usage: stack_oracle REGION_START REGION_BYTES STACK_LIMIT MEMLOCK_LIMIT");
	region_start = number(argv[1]);
	region_bytes = number(argv[2]);
	if (prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
		fatal("PR_SET_THP_DISABLE");

	static char alternate[1 << 16];
	stack_t alt = { .ss_sp = alternate, .ss_size = sizeof alternate };
	if (sigaltstack(&alt, NULL) != 0)
		fatal("sigaltstack");
	struct sigaction action = { .sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER };
	if (sigaction(SIGSEGV, &action, NULL) != 0)
		fatal("sigaction");

	uint64_t stack_limit = number(argv[3]);
	struct rlimit limit = { stack_limit, stack_limit };
	if (getrlimit(RLIMIT_STACK, &limit) != 0)
		fatal("getrlimit");
	limit.rlim_cur = stack_limit == UINT64_MAX ? RLIM_INFINITY : stack_limit;
	if (limit.rlim_max != RLIM_INFINITY && limit.rlim_cur > limit.rlim_max)
		fatal("RLIMIT_STACK above its hard limit");
	if (setrlimit(RLIMIT_STACK, &limit) != 0)
		fatal("setrlimit RLIMIT_STACK");
	if (strcmp(argv[4], "-") != 0) {
		uint64_t memlock = number(argv[4]);
		struct rlimit lock = { memlock, memlock };
		if (setrlimit(RLIMIT_MEMLOCK, &lock) != 0)
			fatal("setrlimit RLIMIT_MEMLOCK");
		drop_ipc_lock();
	}

	char line[512];
	int step = 0;
	while (fgets(line, sizeof line, stdin)) {
		char verb[16], a[32], b[32], c[32], d[32];
		int n = sscanf(line, "%15s %31s %31s %31s %31s", verb, a, b, c, d);
		if (n <= 0)
			continue;
		if (strcmp(verb, "map") == 0 && n == 5) {
			void *got = mmap((void *)(uintptr_t)number(a), number(b), (int)number(c), (int)number(d), -1, 0);
			printf("%d map %d\n", step, got == MAP_FAILED ? errno : 0);
		} else if (strcmp(verb, "munmap") == 0 && n == 3) {
			printf("%d munmap %d\n", step, munmap((void *)(uintptr_t)number(a), number(b)) == 0 ? 0 : errno);
		} else if (strcmp(verb, "protect") == 0 && n == 4) {
			int rc = mprotect((void *)(uintptr_t)number(a), number(b), (int)number(c));
			printf("%d protect %d\n", step, rc == 0 ? 0 : errno);
		} else if (strcmp(verb, "write") == 0 && n == 3) {
			volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)number(a);
			uint8_t value = (uint8_t)number(b);
			if (sigsetjmp(fault_jump, 1) == 0) {
				*p = value;
				printf("%d write ok\n", step);
			} else {
				printf("%d write %s\n", step, fault_name());
			}
		} else if (strcmp(verb, "read") == 0 && n == 2) {
			volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)number(a);
			if (sigsetjmp(fault_jump, 1) == 0) {
				uint8_t value = *p;
				printf("%d read %u\n", step, value);
			} else {
				printf("%d read %s\n", step, fault_name());
			}
		} else if (strcmp(verb, "report") == 0 && n == 1) {
			report_maps(step);
			report_smaps(step);
			report_present(step);
			report_locked(step);
		} else {
			fatal("bad step");
		}
		step++;
	}
	fflush(stdout);
	return 0;
}
