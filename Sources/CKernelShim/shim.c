// The kernel side of the differential tester: the syscalls fsx (ltp/fsx.c in fstests)
// issues against a real file, each returning -errno instead of setting errno.

// Before any system header: glibc only declares SEEK_DATA/SEEK_HOLE, fallocate,
// FALLOC_FL_* and copy_file_range under _GNU_SOURCE.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "ckernelshim.h"

// O_CLOEXEC so the fd does not leak into the mkfs/mount children the tester spawns.
int cks_open(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    return fd < 0 ? -errno : fd;
}

// No retry on EINTR: on Linux the fd is released even when close reports EINTR.
int cks_close(int fd) { return close(fd) < 0 ? -errno : 0; }

int64_t cks_pwrite(int fd, const void *buf, size_t count, int64_t offset) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = pwrite(fd, (const char *)buf + done, count - done, offset + (int64_t)done);
        if (n < 0) {
            if (errno == EINTR) continue;
            // Partial progress is reported as a short write, as write(2) itself would.
            return done > 0 ? (int64_t)done : -errno;
        }
        if (n == 0) break; // cannot happen for count > 0; guards against spinning
        done += (size_t)n;
    }
    // A zero-length write still goes to the kernel so its offset checks (EINVAL) apply.
    if (count == 0) {
        ssize_t n = pwrite(fd, buf, 0, offset);
        if (n < 0) return -errno;
    }
    return (int64_t)done;
}

int64_t cks_pwrite_once(int fd, const void *buf, size_t count, int64_t offset) {
    ssize_t n;
    do {
        n = pwrite(fd, buf, count, offset);
    } while (n < 0 && errno == EINTR);
    return n < 0 ? -errno : (int64_t)n;
}

int64_t cks_pread(int fd, void *buf, size_t count, int64_t offset) {
    size_t done = 0;
    while (done < count) {
        ssize_t n = pread(fd, (char *)buf + done, count - done, offset + (int64_t)done);
        if (n < 0) {
            if (errno == EINTR) continue;
            return done > 0 ? (int64_t)done : -errno;
        }
        if (n == 0) break; // EOF
        done += (size_t)n;
    }
    if (count == 0) { // as for pwrite: let the kernel validate the offset
        ssize_t n = pread(fd, buf, 0, offset);
        if (n < 0) return -errno;
    }
    return (int64_t)done;
}

int cks_ftruncate(int fd, int64_t length) { return ftruncate(fd, length) < 0 ? -errno : 0; }

int cks_fallocate(int fd, int mode, int64_t offset, int64_t length) {
    int flags;
    switch (mode) {
    case CKS_FALLOC_ALLOCATE: flags = 0; break;
    case CKS_FALLOC_ALLOCATE_KEEP_SIZE: flags = FALLOC_FL_KEEP_SIZE; break;
    // The kernel rejects PUNCH_HOLE without KEEP_SIZE, so the pair is one mode here.
    case CKS_FALLOC_PUNCH_HOLE: flags = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; break;
    case CKS_FALLOC_ZERO_RANGE: flags = FALLOC_FL_ZERO_RANGE; break;
    case CKS_FALLOC_ZERO_RANGE_KEEP_SIZE: flags = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE; break;
    default: return -EINVAL;
    }
    return fallocate(fd, flags, offset, length) < 0 ? -errno : 0;
}

int64_t cks_copy_range(int fd, int64_t src, int64_t dst, int64_t length) {
    if (length < 0) return -EINVAL; // size_t would turn it into a huge length
    // Clamp to the source's EOF as it is now, as one kernel call does. Without this, a
    // short first call whose destination lies past EOF grows the file, and the next call
    // would go on copying the zeroes it just exposed past the old EOF.
    int64_t size = cks_size(fd);
    if (size < 0) return size;
    if (src >= 0 && length > size - src) length = src >= size ? 0 : size - src;
    // The kernel advances these offsets itself; the fd's file position is not used.
    off64_t in = src, out = dst;
    int64_t done = 0;
    if (length == 0) { // still let the kernel validate fds and offsets
        ssize_t n = copy_file_range(fd, &in, fd, &out, 0, 0);
        return n < 0 ? -errno : 0;
    }
    while (done < length) {
        ssize_t n = copy_file_range(fd, &in, fd, &out, (size_t)(length - done), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return done > 0 ? done : -errno;
        }
        if (n == 0) break; // source hit EOF
        done += n;
    }
    return done;
}

int64_t cks_seek_data(int fd, int64_t offset) {
    off_t r = lseek(fd, offset, SEEK_DATA);
    return r < 0 ? -errno : (int64_t)r;
}

int64_t cks_seek_hole(int fd, int64_t offset) {
    off_t r = lseek(fd, offset, SEEK_HOLE);
    return r < 0 ? -errno : (int64_t)r;
}

int cks_fsync(int fd) { return fsync(fd) < 0 ? -errno : 0; }

int64_t cks_size(int fd) {
    struct stat st;
    return fstat(fd, &st) < 0 ? -errno : (int64_t)st.st_size;
}

// Only clean pages are dropped, so callers fsync first. posix_fadvise returns the error
// number instead of setting errno.
int cks_drop_cache(int fd) { return -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); }

int64_t cks_resident_pages(int fd, int64_t length) {
    if (length <= 0) return 0;
    long page = sysconf(_SC_PAGESIZE);
    size_t pages = (size_t)((length + page - 1) / page);
    void *p = mmap(NULL, (size_t)length, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return -errno;
    unsigned char *vec = malloc(pages);
    if (!vec) { munmap(p, (size_t)length); return -ENOMEM; }
    int64_t resident = 0;
    if (mincore(p, (size_t)length, vec) < 0) {
        resident = -errno;
    } else {
        for (size_t i = 0; i < pages; i++) resident += vec[i] & 1;
    }
    free(vec);
    munmap(p, (size_t)length);
    return resident;
}

int cks_fs_type(int fd, uint64_t *type) {
    struct statfs sfs;
    if (fstatfs(fd, &sfs) < 0) return -errno;
    *type = (uint64_t)sfs.f_type;
    return 0;
}

// Maps the page-aligned range covering [offset, offset+count) and returns the address of
// `offset` inside it through *at. The mapping may not reach past the page holding EOF:
// touching such a page raises SIGBUS, which would kill the tester instead of failing a check.
static int map_range(int fd, size_t count, int64_t offset, char **base, size_t *maplen, char **at) {
    if (offset < 0) return -EINVAL;
    int64_t page = sysconf(_SC_PAGESIZE);
    int64_t size = cks_size(fd);
    if (size < 0) return (int)size;
    int64_t eof_page_end = (size + page - 1) / page * page;
    if (offset + (int64_t)count > eof_page_end) return -EFAULT;
    int64_t start = offset / page * page;
    *maplen = (size_t)(offset + (int64_t)count - start);
    void *p = mmap(NULL, *maplen, PROT_READ | PROT_WRITE, MAP_SHARED, fd, start);
    if (p == MAP_FAILED) return -errno;
    // No fault-around readahead: each fault brings in the page it touched, as the engine's
    // fault brings in one folio, so a store's page_mkwrite covers the same blocks on both
    // sides (the folio size decides what it allocates).
    (void)madvise(p, *maplen, MADV_RANDOM);
    *base = p;
    *at = (char *)p + (offset - start);
    return 0;
}

int cks_mapped_store(int fd, const void *buf, size_t count, int64_t offset) {
    if (count == 0) return 0; // mmap rejects length 0; a store of nothing is a no-op
    char *base, *at;
    size_t maplen;
    int rc = map_range(fd, count, offset, &base, &maplen, &at);
    if (rc < 0) return rc;
    memcpy(at, buf, count);
    // MS_SYNC writes the dirtied pages back before returning, as fsx's domapwrite does.
    rc = msync(base, maplen, MS_SYNC) < 0 ? -errno : 0;
    if (munmap(base, maplen) < 0 && rc == 0) rc = -errno;
    return rc;
}

int cks_mapped_load(int fd, void *buf, size_t count, int64_t offset) {
    if (count == 0) return 0;
    char *base, *at;
    size_t maplen;
    int rc = map_range(fd, count, offset, &base, &maplen, &at);
    if (rc < 0) return rc;
    memcpy(buf, at, count);
    return munmap(base, maplen) < 0 ? -errno : 0;
}

int cks_malloc_trim(void) { return malloc_trim(0); }

int cks_bind_cpu(int tid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0) {
        if (cpu >= CPU_SETSIZE) return -EINVAL;
        CPU_SET(cpu, &set);
    } else {
        // Every CPU the system has; the kernel keeps only those the thread may use.
        long n = sysconf(_SC_NPROCESSORS_CONF);
        for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
    }
    return sched_setaffinity(tid, sizeof set, &set) == 0 ? 0 : -errno;
}

int cks_thread_id(void) { return (int)gettid(); }
