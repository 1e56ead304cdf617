/*
 * The complete-scan floor (issue 19): the least a program can do to look
 * at every mount of every mount namespace on the host, in plain C. A tool
 * that answers "is this overlay still alive anywhere?" by scanning the host
 * instead of asking the kernel pays at least this, on every operation.
 *
 *   nsscan [--proc] [--repeat N]
 *
 * One scan: every mount namespace, from the kernel's list of them
 * (ioctl(NS_MNT_GET_PREV/NS_MNT_GET_NEXT) on an nsfs fd, starting at our
 * own: Linux 6.12+; it sees namespaces that no process is in, held by an fd
 * or a bind-mounted namespace file); each namespace's mounts with
 * listmount(2) by namespace id; each mount's superblock with statmount(2)
 * STATMOUNT_SB_BASIC (device and magic: what tells a copy of an overlay
 * from anything else). Nothing else: no strings, no processes.
 *
 * When the kernel has no list (or with --proc), the namespaces are found
 * through /proc/PID/ns/mnt of every process, deduplicated by inode, each
 * one's id from NS_GET_MNTNS_ID. That route cannot see a namespace no
 * process is in, so it says `via=proc` and the caller must not take its
 * count as complete.
 *
 * Prints, per scan, `namespaces=N mounts=M overlays=O via=ioctl|proc
 * ns=NANOSECONDS` (overlays: mounts whose superblock is an overlayfs).
 * --repeat N scans N times in this process (default 1).
 *
 * Root only. Exit 0, 1 on bad arguments, 2 when a call fails.
 * Built by bench/run.sh with `cc -O2`.
 *
 * The uapi structures and constants are written out here, checked against
 * linux/mount.h and linux/nsfs.h of Linux 6.18: the machine's headers may
 * be older than the kernel (Debian 12's are 6.1's, without any of them).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Syscall numbers: the generic table (x86_64, aarch64, riscv64 alike). */
#ifndef __NR_statmount
#define __NR_statmount 457
#endif
#ifndef __NR_listmount
#define __NR_listmount 458
#endif

/* linux/mount.h */
struct nsscan_mnt_id_req {
    uint32_t size;
    uint32_t mnt_ns_fd; /* 6.18: an nsfs fd instead of mnt_ns_id; 0 = none */
    uint64_t mnt_id;
    uint64_t param;
    uint64_t mnt_ns_id; /* MNT_ID_REQ_SIZE_VER1 (6.11+) */
};
#define MNT_ID_REQ_SIZE_VER1 32
#define LSMT_ROOT 0xffffffffffffffffULL
#define STATMOUNT_SB_BASIC 0x00000001U

/* The fixed part of struct statmount we read (linux/mount.h): 512 bytes in
 * all, strings after it (none asked for here). */
struct nsscan_statmount {
    uint32_t size;
    uint32_t mnt_opts;
    uint64_t mask;
    uint32_t sb_dev_major;
    uint32_t sb_dev_minor;
    uint64_t sb_magic;
    uint32_t sb_flags;
    uint32_t fs_type;
    uint64_t mnt_id;
    uint8_t rest[512 - 48];
};

/* linux/nsfs.h */
struct nsscan_mnt_ns_info {
    uint32_t size;
    uint32_t nr_mounts;
    uint64_t mnt_ns_id;
};
#define NSIO 0xb7
#define NS_GET_MNTNS_ID _IOR(NSIO, 0x5, uint64_t)
#define NS_MNT_GET_INFO _IOR(NSIO, 10, struct nsscan_mnt_ns_info)
#define NS_MNT_GET_NEXT _IOR(NSIO, 11, struct nsscan_mnt_ns_info)
#define NS_MNT_GET_PREV _IOR(NSIO, 12, struct nsscan_mnt_ns_info)

#define OVERLAYFS_SUPER_MAGIC 0x794c7630

_Static_assert(sizeof(struct nsscan_mnt_id_req) == MNT_ID_REQ_SIZE_VER1, "mnt_id_req VER1");
_Static_assert(sizeof(struct nsscan_statmount) == 512, "statmount fixed part");
_Static_assert(sizeof(struct nsscan_mnt_ns_info) == 16, "MNT_NS_INFO_SIZE_VER0");
_Static_assert(NS_MNT_GET_NEXT == 0x8010b70b, "NS_MNT_GET_NEXT");
_Static_assert(NS_GET_MNTNS_ID == 0x8008b705, "NS_GET_MNTNS_ID");

static void die(const char *what)
{
    fprintf(stderr, "nsscan: %s: %s\n", what, strerror(errno));
    exit(2);
}

struct tally {
    long namespaces, mounts, overlays;
};

static uint64_t *ids;
static size_t ids_cap = 4096;

/* listmount(2) of the namespace ns_id, then statmount(2) SB_BASIC of each
 * mount in it. A namespace that died between being listed and being read
 * (ENOENT) is simply gone: not counted. */
static void scan_namespace(uint64_t ns_id, struct tally *t)
{
    size_t n = 0;
    uint64_t last = 0;
    for (;;) {
        struct nsscan_mnt_id_req req = {
            .size = MNT_ID_REQ_SIZE_VER1, .mnt_id = LSMT_ROOT, .param = last,
            .mnt_ns_id = ns_id};
        long got = syscall(__NR_listmount, &req, ids + n, ids_cap - n, 0);
        if (got < 0) {
            if (errno == ENOENT)
                return;
            die("listmount");
        }
        n += (size_t)got;
        if (n < ids_cap)
            break;
        /* Full: there may be more after the last one. */
        last = ids[n - 1];
        ids_cap *= 2;
        ids = realloc(ids, ids_cap * sizeof *ids);
        if (!ids)
            die("realloc");
    }
    t->namespaces++;
    static struct nsscan_statmount sm;
    for (size_t i = 0; i < n; i++) {
        struct nsscan_mnt_id_req req = {
            .size = MNT_ID_REQ_SIZE_VER1, .mnt_id = ids[i], .param = STATMOUNT_SB_BASIC,
            .mnt_ns_id = ns_id};
        if (syscall(__NR_statmount, &req, &sm, sizeof sm, 0) < 0) {
            if (errno == ENOENT) /* unmounted meanwhile */
                continue;
            die("statmount");
        }
        t->mounts++;
        if ((sm.mask & STATMOUNT_SB_BASIC) && sm.sb_magic == OVERLAYFS_SUPER_MAGIC)
            t->overlays++;
    }
}

/* The kernel's list: ours, then every one before it, then every one after. */
static int scan_kernel_list(struct tally *t)
{
    int self = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        die("open /proc/self/ns/mnt");
    struct nsscan_mnt_ns_info info = {.size = sizeof info};
    if (ioctl(self, NS_MNT_GET_INFO, &info) < 0) {
        close(self);
        return -1; /* no list on this kernel: the caller falls back */
    }
    scan_namespace(info.mnt_ns_id, t);
    unsigned long dirs[] = {NS_MNT_GET_PREV, NS_MNT_GET_NEXT};
    for (int d = 0; d < 2; d++) {
        int cur = self;
        for (;;) {
            info = (struct nsscan_mnt_ns_info){.size = sizeof info};
            int next = ioctl(cur, dirs[d], &info);
            if (cur != self)
                close(cur);
            if (next < 0) {
                if (errno == ENOENT) /* the end of the list */
                    break;
                die("ioctl(NS_MNT_GET_PREV/NEXT)");
            }
            scan_namespace(info.mnt_ns_id, t);
            cur = next;
        }
    }
    close(self);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Every process's /proc/PID/ns/mnt, each namespace once (by inode). */
static void scan_proc(struct tally *t)
{
    DIR *proc = opendir("/proc");
    if (!proc)
        die("opendir /proc");
    size_t cap = 1024, n = 0;
    uint64_t *seen = malloc(cap * sizeof *seen);
    if (!seen)
        die("malloc");
    struct dirent *e;
    char path[300]; /* a d_name is up to 255 bytes */
    while ((e = readdir(proc))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/ns/mnt", e->d_name);
        struct stat st;
        if (stat(path, &st) < 0) /* exited, or a kernel thread */
            continue;
        uint64_t ino = st.st_ino;
        /* Few namespaces, many processes: a sorted array and bsearch. */
        if (bsearch(&ino, seen, n, sizeof *seen, cmp_u64))
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        uint64_t ns_id;
        if (ioctl(fd, NS_GET_MNTNS_ID, &ns_id) < 0)
            die("ioctl(NS_GET_MNTNS_ID)");
        close(fd);
        if (n == cap) {
            cap *= 2;
            seen = realloc(seen, cap * sizeof *seen);
            if (!seen)
                die("realloc");
        }
        seen[n++] = ino;
        qsort(seen, n, sizeof *seen, cmp_u64);
        scan_namespace(ns_id, t);
    }
    closedir(proc);
    free(seen);
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void usage(void)
{
    fprintf(stderr, "usage: nsscan [--proc] [--repeat N]\n");
    exit(1);
}

int main(int argc, char **argv)
{
    int force_proc = 0, repeat = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--proc") == 0) {
            force_proc = 1;
        } else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*argv[i] == 0 || *end != 0 || v < 1 || v > 100000)
                usage();
            repeat = (int)v;
        } else {
            usage();
        }
    }
    ids = malloc(ids_cap * sizeof *ids);
    if (!ids)
        die("malloc");
    for (int r = 0; r < repeat; r++) {
        struct tally t = {0, 0, 0};
        long long start = now_ns();
        const char *via = "ioctl";
        if (force_proc || scan_kernel_list(&t) < 0) {
            via = "proc";
            scan_proc(&t);
        }
        long long took = now_ns() - start;
        printf("namespaces=%ld mounts=%ld overlays=%ld via=%s ns=%lld\n", t.namespaces, t.mounts,
               t.overlays, via, took);
    }
    return 0;
}
