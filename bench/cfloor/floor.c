/*
 * The C floor: the same kernel calls as the Rust floor (bench/floor), in
 * plain C against libc, with nothing else. A C program starts faster than a
 * Rust one (no std runtime set-up, a smaller dynamic binary), so the
 * whole-process comparison against it shows all of the tool's start-up cost.
 *
 *   floor noop
 *   floor [--kernel-checks] mount STRATEGY TARGET TMPDIR COMMON UPPER WORK MAPLINE REL...
 *   floor [--kernel-checks] umount TARGET
 *   floor [--kernel-checks] cycles WARMUP N TARGET COMMON UPPER WORK MAPLINE REL...
 *   floor probe DIR...
 *
 * The arguments mean what they mean for bench/floor (see its main.rs).
 * `cycles` makes WARMUP + N detached mount + umount cycles in this one
 * process (user namespace, idmapped tree, layers, overlay, umount2) and
 * prints the wall time of each of the N measured cycles in nanoseconds, one
 * per line: the in-process floor beside bench/inproc-api.
 *
 * --kernel-checks (C floor only; issue 19) adds what a tool that asks the
 * kernel instead of scanning every mount namespace does per overlay, so
 * that it is the honest floor for such a tool:
 *   - before mounting, the overlayfs in-use probe of UPPER and of WORK
 *     (probe(): EBUSY means in use by a live overlay in any namespace, and
 *     the mount is refused, exit 32);
 *   - before unmounting, an inotify watch on the overlay's root; after
 *     umount2, a non-blocking read expecting IN_UNMOUNT, which the kernel
 *     sends only when the superblock dies. Exit 0 when it did; 64 (mount(8)'s
 *     "some succeeded") when it was unmounted here but lives on elsewhere, a
 *     copy in another mount namespace.
 * `probe DIR...` runs only the in-use probe and prints `DIR busy` or
 * `DIR free` per directory (the harness checks the probe tells them apart).
 *
 * Exit 0 on success, 32 when a kernel call fails (mount(8)'s "mount
 * failure"), 1 on bad arguments. Built by bench/run.sh with `cc -O2`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The kernel copies mount(2)'s data into one page (see bench/floor). */
#define MAX_MOUNT_DATA 4095
#define MAX_LAYERS 4096

static void die(const char *what)
{
    fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
    exit(32);
}

static void die_msg(const char *what, const char *msg)
{
    fprintf(stderr, "floor: %s: %s\n", what, msg);
    exit(32);
}

static int check(const char *what, long ret)
{
    if (ret < 0)
        die(what);
    return (int)ret;
}

/* Writes text to /proc/PID/NAME. */
static void write_proc(pid_t pid, const char *name, const char *text)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, name);
    int fd = check(path, open(path, O_WRONLY | O_CLOEXEC));
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len)
        die(path);
    close(fd);
}

/*
 * A user namespace carrying map for uids and gids: a helper child born in it
 * with clone(CLONE_NEWUSER | CLONE_FILES) (no CLONE_VM: like fork, on a copy
 * of our stack), maps written from here, its namespace opened, the child
 * killed and reaped. The fd keeps the namespace.
 */
static int userns(const char *map)
{
    pid_t parent = getpid();
    long pid = syscall(SYS_clone, CLONE_NEWUSER | CLONE_FILES | SIGCHLD, NULL, NULL, NULL, 0);
    if (pid < 0)
        die("clone(CLONE_NEWUSER|CLONE_FILES)");
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        if (getppid() != parent)
            _exit(1);
        for (;;)
            pause();
    }
    write_proc(pid, "uid_map", map);
    write_proc(pid, "setgroups", "deny");
    write_proc(pid, "gid_map", map);
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/ns/user", pid);
    int ns = check(path, open(path, O_RDONLY | O_CLOEXEC));
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return ns;
}

/* open_tree(OPEN_TREE_CLONE) of dir, then mount_setattr(MOUNT_ATTR_IDMAP |
 * MOUNT_ATTR_RDONLY, MS_PRIVATE): a detached idmapped tree. */
static int idmapped_tree(const char *dir, int ns)
{
    int tree = check("open_tree",
                     syscall(SYS_open_tree, AT_FDCWD, dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
    struct mount_attr attr = {
        .attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        .propagation = MS_PRIVATE,
        .userns_fd = (uint64_t)ns,
    };
    check("mount_setattr(MOUNT_ATTR_IDMAP)",
          syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr));
    return tree;
}

static void fsconfig_string(int fs, const char *key, const char *value)
{
    check(key, syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, key, value, 0));
}

/* ---------------------------------------------------- --kernel-checks */

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

/*
 * The probe's fixed parts: an empty directory on a tmpfs of our own that is
 * never attached to any mount table (fsopen + CMD_CREATE + fsmount), so no
 * other program can see or change it. It is the probe's lowerdir and its
 * workdir: being on another mount than the probed upperdir, it makes
 * overlayfs fail with EINVAL ("workdir and upperdir must reside under the
 * same mount") right after the upperdir's in-use check, before anything is
 * written anywhere. Made once per process; both fds stay open for the
 * process's life (closing the fsmount fd would dissolve the mount).
 */
static int probe_mnt = -1, probe_dir = -1;

static void probe_setup(void)
{
    if (probe_dir >= 0)
        return;
    int fs = check("fsopen(tmpfs)", syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC));
    fsconfig_string(fs, "mode", "0700");
    check("fsconfig(tmpfs) create", syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
    probe_mnt = check("fsmount(tmpfs)",
                      syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
                              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
    close(fs);
    check("mkdirat(probe dir)", mkdirat(probe_mnt, "e", 0700));
    probe_dir = check("openat(probe dir)",
                      openat(probe_mnt, "e", O_PATH | O_DIRECTORY | O_CLOEXEC));
}

/*
 * Is dir in use as the upper or work directory of a live overlay, in any
 * mount namespace? overlayfs marks both directories in use for the life of
 * the overlay's superblock, and with index=on a new overlay whose upperdir
 * is marked fails with EBUSY. Probing dir as the probe's upperdir answers
 * for an upperdir and for a workdir alike. 1: in use, 0: free.
 */
static int probe(const char *dir)
{
    int d = check(dir, open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC));
    probe_setup();
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", probe_dir);
    int fs = check("fsopen(overlay)", syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC));
    fsconfig_string(fs, "lowerdir", fdpath);
    /* The directory by fd where overlayfs takes one (6.18 does), else by the
     * fd's /proc path: either way what was opened, not a path re-read. */
    if (syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "upperdir", NULL, d) < 0) {
        if (errno != EINVAL)
            die("fsconfig upperdir (fd)");
        char upper[64];
        snprintf(upper, sizeof upper, "/proc/self/fd/%d", d);
        fsconfig_string(fs, "upperdir", upper);
    }
    fsconfig_string(fs, "workdir", fdpath);
    fsconfig_string(fs, "index", "on");
    long r = syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0);
    int err = errno;
    close(fs);
    close(d);
    if (r == 0)
        die_msg("probe", "overlayfs accepted the probe: cannot tell in use from free here");
    if (err == EBUSY)
        return 1;
    if (err == EINVAL)
        return 0;
    errno = err;
    die("probe: fsconfig(FSCONFIG_CMD_CREATE)");
    return -1;
}

/* Before mounting: refuse an upperdir or workdir that a live overlay uses. */
static void check_free(const char *upper, const char *work)
{
    if (probe(upper))
        die_msg(upper, "in use by a live overlay (upperdir or workdir), in some mount namespace");
    if (probe(work))
        die_msg(work, "in use by a live overlay (upperdir or workdir), in some mount namespace");
}

/*
 * Unmounts target and says whether the overlay's superblock died with it
 * (1) or lives on in a copy elsewhere (0): an inotify watch on its root,
 * set through a short-lived O_PATH fd (closed before umount2, which an open
 * fd would make EBUSY), gets IN_UNMOUNT only when the superblock is shut
 * down; the last mntput runs before umount2 returns to us, so a
 * non-blocking read right after sees it or it did not happen.
 */
static int umount_checked(const char *target)
{
    int root = check(target, open(target, O_PATH | O_DIRECTORY | O_CLOEXEC));
    struct statfs st;
    check("fstatfs", fstatfs(root, &st));
    if (st.f_type != OVERLAYFS_SUPER_MAGIC)
        die_msg(target, "not an overlay");
    int in = check("inotify_init1", inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    char fdpath[64];
    snprintf(fdpath, sizeof fdpath, "/proc/self/fd/%d", root);
    check("inotify_add_watch", inotify_add_watch(in, fdpath, IN_DELETE_SELF | IN_ONLYDIR));
    close(root);
    check("umount2", syscall(SYS_umount2, target, 0));
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    int gone = 0;
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0 && errno != EAGAIN)
        die("read(inotify)");
    for (ssize_t off = 0; off < n;) {
        const struct inotify_event *ev = (const void *)(buf + off);
        if (ev->mask & IN_UNMOUNT)
            gone = 1;
        off += sizeof *ev + ev->len;
    }
    close(in);
    return gone;
}

struct spec {
    const char *target, *tmpdir, *common, *upper, *work;
    char **rels;
    int nrels;
};

static void detached(const struct spec *s, int ns)
{
    /* The tree must stay open until FSCONFIG_CMD_CREATE has returned. */
    int tree = idmapped_tree(s->common, ns);
    static int layers[MAX_LAYERS];
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
    };
    for (int i = 0; i < s->nrels; i++)
        layers[i] = check("openat2(O_PATH, RESOLVE_BENEATH)",
                          syscall(SYS_openat2, tree, s->rels[i], &how, sizeof how));
    int fs = check("fsopen", syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC));
    fsconfig_string(fs, "source", "floor");
    for (int i = 0; i < s->nrels; i++)
        check("fsconfig lowerdir+",
              syscall(SYS_fsconfig, fs, FSCONFIG_SET_FD, "lowerdir+", NULL, layers[i]));
    fsconfig_string(fs, "upperdir", s->upper);
    fsconfig_string(fs, "workdir", s->work);
    check("fsconfig create", syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0));
    int mnt = check("fsmount", syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0));
    check("move_mount", syscall(SYS_move_mount, mnt, "", AT_FDCWD, s->target,
                                MOVE_MOUNT_F_EMPTY_PATH));
    for (int i = 0; i < s->nrels; i++)
        close(layers[i]);
    close(tree);
    close(mnt);
    close(fs);
}

/* Appends text to buf (of size MAX_MOUNT_DATA + 1) or fails like the Rust
 * floor: a longer lowerdir= would silently lose layers. */
static void append(char *buf, size_t *len, const char *text)
{
    size_t n = strlen(text);
    if (*len + n > MAX_MOUNT_DATA)
        die_msg("mount(2) data", "lowerdir= option string is longer than one page");
    memcpy(buf + *len, text, n + 1);
    *len += n;
}

/*
 * common-dir (per_layer == 0): one idmapped tree of COMMON attached at
 * TMPDIR/0; per-layer: one per layer at TMPDIR/0..N-1. Then mount(2) from
 * inside TMPDIR with lowerdir= naming paths relative to it, then unmount the
 * temporary mounts and remove their directories.
 */
static void attached(const struct spec *s, int ns, int per_layer)
{
    static char data[MAX_MOUNT_DATA + 1];
    static char path[4096];
    size_t len = 0;
    data[0] = 0;
    append(data, &len, "lowerdir=");
    for (int i = 0; i < s->nrels; i++) {
        char name[4200];
        if (per_layer)
            snprintf(name, sizeof name, "%s%d", i ? ":" : "", i);
        else if (strcmp(s->rels[i], ".") == 0)
            snprintf(name, sizeof name, "%s0", i ? ":" : "");
        else
            snprintf(name, sizeof name, "%s0/%s", i ? ":" : "", s->rels[i]);
        append(data, &len, name);
    }
    append(data, &len, ",upperdir=");
    append(data, &len, s->upper);
    append(data, &len, ",workdir=");
    append(data, &len, s->work);

    int ntrees = per_layer ? s->nrels : 1;
    int mounted = 0;
    const char *failure = NULL;
    int saved_errno = 0;
    check(s->tmpdir, mkdir(s->tmpdir, 0700));
    for (int i = 0; i < ntrees; i++) {
        snprintf(path, sizeof path, "%s/%d", s->tmpdir, i);
        if (mkdir(path, 0700) < 0) {
            failure = "mkdir";
            saved_errno = errno;
            break;
        }
        char dir[4200];
        if (!per_layer || strcmp(s->rels[i], ".") == 0)
            snprintf(dir, sizeof dir, "%s", s->common);
        else
            snprintf(dir, sizeof dir, "%s/%s", s->common, s->rels[i]);
        int tree = idmapped_tree(dir, ns);
        long r = syscall(SYS_move_mount, tree, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH);
        close(tree);
        if (r < 0) {
            failure = "move_mount";
            saved_errno = errno;
            break;
        }
        mounted++;
    }
    if (!failure) {
        if (chdir(s->tmpdir) < 0) {
            failure = "chdir";
            saved_errno = errno;
        } else {
            if (syscall(SYS_mount, "floor", s->target, "overlay", 0, data) < 0) {
                failure = "mount overlay";
                saved_errno = errno;
            }
            if (chdir("/") < 0)
                die("chdir /");
        }
    }
    for (int i = mounted - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/%d", s->tmpdir, i);
        check("umount2", syscall(SYS_umount2, path, 0));
    }
    for (int i = ntrees - 1; i >= 0; i--) {
        snprintf(path, sizeof path, "%s/%d", s->tmpdir, i);
        rmdir(path);
    }
    rmdir(s->tmpdir);
    if (failure) {
        errno = saved_errno;
        die(failure);
    }
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int count(const char *text)
{
    char *end;
    long n = strtol(text, &end, 10);
    if (*text == 0 || *end != 0 || n < 0 || n > 1000000) {
        fprintf(stderr, "floor: %s: not a count\n", text);
        exit(1);
    }
    return (int)n;
}

static void usage(void)
{
    /* The first three lines are the Rust floor's usage, word for word (the
     * two take the same arguments); the rest is the C floor's own. */
    fprintf(stderr,
            "usage: floor noop | floor umount TARGET |\n"
            "       floor mount detached|common-dir|per-layer TARGET TMPDIR COMMON UPPER WORK "
            "MAPLINE REL... |\n"
            "       floor cycles WARMUP N TARGET COMMON UPPER WORK MAPLINE REL...\n"
            "C floor only: floor --kernel-checks mount|umount|cycles ... | floor probe DIR...\n");
    exit(1);
}

int main(int argc, char **argv)
{
    int checks = 0;
    if (argc >= 2 && strcmp(argv[1], "--kernel-checks") == 0) {
        checks = 1;
        argv++;
        argc--;
        if (argc < 2 || strcmp(argv[1], "noop") == 0 || strcmp(argv[1], "probe") == 0)
            usage();
    }
    if (argc == 2 && strcmp(argv[1], "noop") == 0)
        return 0;
    if (argc >= 3 && strcmp(argv[1], "probe") == 0) {
        for (int i = 2; i < argc; i++)
            printf("%s %s\n", argv[i], probe(argv[i]) ? "busy" : "free");
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "umount") == 0) {
        if (checks)
            return umount_checked(argv[2]) ? 0 : 64;
        check("umount2", syscall(SYS_umount2, argv[2], 0));
        return 0;
    }
    if (argc >= 10 && strcmp(argv[1], "mount") == 0) {
        struct spec s = {argv[3], argv[4], argv[5], argv[6], argv[7], argv + 9, argc - 9};
        if (s.nrels > MAX_LAYERS)
            usage();
        int strategy = strcmp(argv[2], "detached") == 0     ? 0
                       : strcmp(argv[2], "common-dir") == 0 ? 1
                       : strcmp(argv[2], "per-layer") == 0  ? 2
                                                            : -1;
        if (strategy < 0)
            usage();
        if (checks)
            check_free(s.upper, s.work);
        int ns = userns(argv[8]);
        if (strategy == 0)
            detached(&s, ns);
        else
            attached(&s, ns, strategy == 2);
        close(ns);
        return 0;
    }
    if (argc >= 10 && strcmp(argv[1], "cycles") == 0) {
        int warmup = count(argv[2]), n = count(argv[3]);
        struct spec s = {argv[4], NULL, argv[5], argv[6], argv[7], argv + 9, argc - 9};
        if (s.nrels > MAX_LAYERS)
            usage();
        long long *times = calloc(n ? n : 1, sizeof *times);
        if (!times)
            die("calloc");
        for (int c = 0; c < warmup + n; c++) {
            long long start = now_ns();
            if (checks)
                check_free(s.upper, s.work);
            int ns = userns(argv[8]);
            detached(&s, ns);
            close(ns);
            if (checks) {
                if (!umount_checked(s.target))
                    die_msg(s.target, "the overlay lives on after umount2 (no IN_UNMOUNT)");
            } else {
                check("umount2", syscall(SYS_umount2, s.target, 0));
            }
            if (c >= warmup)
                times[c - warmup] = now_ns() - start;
        }
        for (int i = 0; i < n; i++)
            printf("%lld\n", times[i]);
        return 0;
    }
    usage();
}
