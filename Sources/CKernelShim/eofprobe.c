// One attempt of the EOF-block probe (iomap kernel-probe eof-block): on a real file, a
// buffered write over a newly reserved block that holds an unaligned EOF fails with nothing
// written while a store through a shared mapping dirties that block; afterwards, does the
// stored data survive msync, fsync and a cache drop?
//
// Two ways to put the store inside the write's window, between the file system's delalloc
// reservation and the failure cleanup:
// - race: the writer's buffer is a PROT_NONE page, so the write fails at once; the storer
//   has already faulted the page in for reading (so its store needs only page_mkwrite) and
//   polls fstat's block count until the writer's reservation shows, then stores. The window
//   is well under a microsecond, so only some attempts hit it.
// - userfaultfd: the writer's buffer is a missing page registered with userfaultfd, so the
//   write stalls in its pre-fault after the reservation; the storer stores, the page is
//   unmapped and the fault woken, and the write fails. Every attempt hits the window.

#define _GNU_SOURCE
#include "ckernelshim.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char stored[8] = {'E', 'O', 'F', 'B', 'L', 'O', 'C', 'K'};

struct writer_args {
    int fd;
    char *buf;
    int64_t offset;
    volatile int go;
    int64_t result;
};

static void *writer(void *p) {
    struct writer_args *a = p;
    while (!__atomic_load_n(&a->go, __ATOMIC_ACQUIRE)) {
    }
    ssize_t n = pwrite(a->fd, a->buf, 4096, a->offset);
    a->result = n < 0 ? -errno : n;
    return 0;
}

int cks_probe_eof_block(const char *path, int64_t isize, int64_t store_offset, int method, struct cks_probe_attempt *out) {
    memset(out, 0, sizeof *out);
    long page = sysconf(_SC_PAGESIZE);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = 0;
    char head[4096];
    memset(head, 0x11, sizeof head);
    char *map = MAP_FAILED;
    char *buf = MAP_FAILED;
    int uffd = -1;
    size_t maplen = 0;
    if (pwrite(fd, head, sizeof head, 0) != (ssize_t)sizeof head || fsync(fd) < 0 || ftruncate(fd, isize) < 0) {
        rc = -errno;
        goto out;
    }
    maplen = (size_t)((store_offset / page + 1) * page);
    map = mmap(0, maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    // Read it in first: the racing store then takes only the write fault (page_mkwrite).
    (void)*(volatile char *)(map + store_offset);

    struct writer_args a = {.fd = fd, .offset = 5120};
    pthread_t t;
    if (method == CKS_PROBE_USERFAULTFD) {
        uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
        if (uffd < 0) {
            rc = -errno;
            goto out;
        }
        struct uffdio_api api = {.api = UFFD_API};
        if (ioctl(uffd, UFFDIO_API, &api) < 0) {
            rc = -errno;
            goto out;
        }
        buf = mmap(0, (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
            rc = -errno;
            goto out;
        }
        struct uffdio_register reg = {.range = {(unsigned long)buf, (unsigned long)page}, .mode = UFFDIO_REGISTER_MODE_MISSING};
        if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) {
            rc = -errno;
            goto out;
        }
        a.buf = buf;
        a.go = 1;
        if ((rc = -pthread_create(&t, 0, writer, &a)) != 0) goto out;
        struct pollfd pfd = {.fd = uffd, .events = POLLIN};
        struct uffd_msg msg;
        int stalled = poll(&pfd, 1, 5000) > 0 && read(uffd, &msg, sizeof msg) == (ssize_t)sizeof msg && msg.event == UFFD_EVENT_PAGEFAULT;
        out->window_hit = stalled;
        memcpy(map + store_offset, stored, sizeof stored);
        // The buffer goes away, then the stalled fault retries and fails: EFAULT, nothing written.
        munmap(buf, (size_t)page);
        buf = MAP_FAILED;
        struct uffdio_range range = {(unsigned long)a.buf, (unsigned long)page};
        (void)ioctl(uffd, UFFDIO_WAKE, &range);
        pthread_join(t, 0);
    } else {
        buf = mmap(0, (size_t)page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (buf == MAP_FAILED) {
            rc = -errno;
            goto out;
        }
        a.buf = buf;
        struct stat before, now;
        if (fstat(fd, &before) < 0) {
            rc = -errno;
            goto out;
        }
        if ((rc = -pthread_create(&t, 0, writer, &a)) != 0) goto out;
        __atomic_store_n(&a.go, 1, __ATOMIC_RELEASE);
        int polls = 0;
        do {
            if (fstat(fd, &now) < 0) break;
        } while (now.st_blocks == before.st_blocks && ++polls < 100000);
        out->window_hit = now.st_blocks != before.st_blocks;
        memcpy(map + store_offset, stored, sizeof stored);
        pthread_join(t, 0);
    }
    out->write_result = a.result;
    if (msync(map, maplen, MS_SYNC) < 0 || fsync(fd) < 0) {
        rc = -errno;
        goto out;
    }
    munmap(map, maplen);
    map = MAP_FAILED;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    char back[sizeof stored];
    if (pread(fd, back, sizeof back, store_offset) != (ssize_t)sizeof back) {
        rc = -errno;
        goto out;
    }
    out->lost = memcmp(back, stored, sizeof stored) != 0;
out:
    if (map != MAP_FAILED) munmap(map, maplen);
    if (buf != MAP_FAILED) munmap(buf, (size_t)page);
    if (uffd >= 0) close(uffd);
    close(fd);
    unlink(path);
    return rc;
}
