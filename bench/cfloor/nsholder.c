/*
 * The other mount namespaces of the namespaces axis (issue 19): N mount
 * namespaces, each a container-like copy of the namespace this starts in
 * plus M small tmpfs mounts, made cheaply in one process and released
 * reliably.
 *
 *   nsholder N M DIR
 *
 * For each namespace: setns() back to the namespace we started in,
 * unshare(CLONE_NEWNS) (a copy of it, not of the previous copy, so every
 * namespace has the same table), make every mount in the copy private (so
 * nothing mounted there can propagate anywhere, whatever the starting
 * namespace's propagation was), mount M tmpfs at DIR/0..M-1, and keep the
 * namespace alive by an open fd of /proc/thread-self/ns/mnt. No process is
 * left in any of them: the fds alone keep them, as a bind-mounted namespace
 * file or a runtime holding an fd would. DIR/0..M-1 are made (mkdir) in the
 * starting namespace first; nothing is mounted there.
 *
 * When all are made it prints `ready N NANOSECONDS` on stdout and waits
 * for stdin to close (or for any line); then it closes the fds (the last
 * reference: each namespace and its mounts are torn down inside close(),
 * before it returns), prints `released NANOSECONDS` and exits 0. Killed
 * instead, the kernel closes the fds for it; it asks to be killed
 * (PR_SET_PDEATHSIG) if its parent dies first, so an aborted benchmark leaks
 * no namespace.
 *
 * Root only (CAP_SYS_ADMIN). Exit 1 on bad arguments, 2 when making a
 * namespace fails (everything made so far is released by the exit).
 * Built by bench/run.sh with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_NAMESPACES 100000
#define MAX_MOUNTS 1000

static void die(const char *what)
{
    fprintf(stderr, "nsholder: %s: %s\n", what, strerror(errno));
    exit(2);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int count(const char *text, int max)
{
    char *end;
    long n = strtol(text, &end, 10);
    if (*text == 0 || *end != 0 || n < 0 || n > max) {
        fprintf(stderr, "nsholder: %s: not a count (0..%d)\n", text, max);
        exit(1);
    }
    return (int)n;
}

/* One fd per namespace, plus a margin for stdio and the base namespace: the
 * default soft limit (1024, here 20000) is too low for a flood. Root may
 * raise the hard limit too (up to fs.nr_open). */
static void raise_nofile(int n)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rlim_t want = (rlim_t)n + 64;
    if (rl.rlim_cur >= want)
        return;
    rl.rlim_cur = want;
    if (rl.rlim_max < want)
        rl.rlim_max = want;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit(RLIMIT_NOFILE)");
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: nsholder N M DIR\n");
        return 1;
    }
    int n = count(argv[1], MAX_NAMESPACES), m = count(argv[2], MAX_MOUNTS);
    const char *dir = argv[3];
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        die("prctl(PR_SET_PDEATHSIG)");
    if (getppid() != parent) /* the parent died before the prctl */
        return 2;
    raise_nofile(n);
    int *fds = calloc(n ? n : 1, sizeof *fds);
    if (!fds)
        die("calloc");

    /* The mountpoints, made once here: every copy has them. */
    char path[4096];
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        die(dir);
    for (int k = 0; k < m; k++) {
        snprintf(path, sizeof path, "%s/%d", dir, k);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            die(path);
    }

    int base = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (base < 0)
        die("open /proc/thread-self/ns/mnt");
    long long start = now_ns();
    for (int i = 0; i < n; i++) {
        if (unshare(CLONE_NEWNS) < 0)
            die("unshare(CLONE_NEWNS)");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            die("mount --make-rprivate /");
        for (int k = 0; k < m; k++) {
            snprintf(path, sizeof path, "%s/%d", dir, k);
            if (mount("nsholder", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      "size=64k,nr_inodes=64,mode=0700") < 0)
                die(path);
        }
        fds[i] = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (fds[i] < 0)
            die("open /proc/thread-self/ns/mnt");
        /* Back to the starting namespace: the next copy is made from it, and
         * no process stays in this one. */
        if (setns(base, CLONE_NEWNS) < 0)
            die("setns back");
    }
    printf("ready %d %lld\n", n, now_ns() - start);
    fflush(stdout);

    /* Until told: stdin closes (or a line arrives). */
    char buf[64];
    while (read(0, buf, sizeof buf) < 0 && errno == EINTR)
        ;
    start = now_ns();
    for (int i = n - 1; i >= 0; i--)
        close(fds[i]);
    printf("released %lld\n", now_ns() - start);
    fflush(stdout);
    return 0;
}
