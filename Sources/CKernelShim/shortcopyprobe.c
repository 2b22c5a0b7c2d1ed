// One attempt of the short-copy probe (iomap kernel-probe short-copy): a buffered write into
// a hole (or an unwritten extent) of a file comes from a user buffer that stops being
// readable part of the way through, so the kernel's copy into the page cache comes up short.
// Afterwards, does the file hold anything other than zeroes outside the bytes the write
// reported written, in the page cache and, after fsync and a cache drop, on disk?
//
// Stale bytes are whatever the page allocator handed out with the new page-cache memory.
// So that they are recognisable, each attempt first fills some anonymous memory with a
// marker pattern and frees it: the pages it gave back are likely to be the next ones
// handed out on this CPU, and a stale byte that equals the marker at its offset came from
// them.
//
// With a uid, the write and the reads run in a child process that has dropped to that uid,
// on a file it owns: no privilege is needed to see the stale memory.
//
// Zeroes alone do not tell whether the kernel zeroed the bytes or was handed zeroed memory.
// So, where /proc/self/pagemap shows frame numbers (CAP_SYS_ADMIN), the attempt also notes
// whether the page-cache page under the write is one of the pages the marker was freed
// from: if it is, and the bytes read as zeroes, the kernel zeroed them.

#define _GNU_SOURCE
#include "ckernelshim.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

// Eight distinct non-zero bytes; memory and file offsets agree modulo the page size, so the
// marker byte that belongs at file offset o is marker[o % 8].
static const unsigned char marker[8] = {'S', 't', 'A', 'l', 'E', 0xA5, 0x5A, 0xC3};

// How much anonymous memory each attempt fills and frees: enough pages to cover a 64 KiB
// folio several times over, little enough to keep an attempt to a few milliseconds.
enum { SPRAY_BYTES = 4 << 20 };

// What the writer puts in the readable part of its buffer: non-zero, and not the marker.
enum { DATA_BYTE = 0x77 };

enum { SPRAY_PAGES = SPRAY_BYTES / 4096 };

// The page frame numbers of `count` pages from `addr`, from /proc/self/pagemap; 0 where the
// kernel does not show them (no CAP_SYS_ADMIN, or not present). Returns whether any showed.
static int frame_numbers(const void *addr, size_t count, uint64_t *pfns) {
    memset(pfns, 0, count * sizeof *pfns);
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    long page = sysconf(_SC_PAGESIZE);
    ssize_t n = pread(fd, pfns, count * sizeof *pfns, (off_t)((uintptr_t)addr / (uintptr_t)page * sizeof *pfns));
    close(fd);
    int any = 0;
    for (size_t i = 0; i < count; i++) {
        // Bit 63: present; bits 0-54: the frame number.
        pfns[i] = (n == (ssize_t)(count * sizeof *pfns) && (pfns[i] >> 63)) ? pfns[i] & ((1ULL << 55) - 1) : 0;
        any |= pfns[i] != 0;
    }
    return any;
}

// Fills SPRAY_BYTES of anonymous memory with the marker and frees it. With `pfns` (room for
// SPRAY_PAGES), notes the frames it used first; returns whether they showed.
static int spray_marker(uint64_t *pfns) {
    unsigned char *p = mmap(0, SPRAY_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    for (size_t i = 0; i < SPRAY_BYTES; i++) p[i] = marker[i % 8];
    int shown = pfns ? frame_numbers(p, SPRAY_PAGES, pfns) : 0;
    munmap(p, SPRAY_BYTES);
    return shown;
}

// Whether the page-cache page holding `offset` of `fd` is one of the `pfns`: 1 or 0, or -1
// when its frame number does not show.
static int page_is_one_of(int fd, int64_t offset, const uint64_t *pfns) {
    long page = sysconf(_SC_PAGESIZE);
    off_t start = (off_t)(offset / page * page);
    volatile unsigned char *m = mmap(0, (size_t)page, PROT_READ, MAP_SHARED, fd, start);
    if (m == MAP_FAILED) return -1;
    (void)m[0];  // maps the cached page
    uint64_t pfn;
    frame_numbers((const void *)m, 1, &pfn);
    munmap((void *)m, (size_t)page);
    if (!pfn) return -1;
    for (size_t i = 0; i < SPRAY_PAGES; i++)
        if (pfns[i] == pfn) return 1;
    return 0;
}

// Memory for the attempt's own buffers straight from mmap rather than malloc: the
// unprivileged attempt runs in a child forked from a multithreaded program, where only
// such calls are sure not to find a lock another thread held at the fork.
static void *scratch_alloc(size_t bytes) {
    void *p = mmap(0, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? 0 : p;
}

// Counts the bytes of the file outside [lo, hi) that are not zero, and how many of those
// equal the marker at their offset.
static int count_stale(int fd, int64_t file_size, int64_t lo, int64_t hi, int64_t *stale, int64_t *markers) {
    unsigned char *buf = scratch_alloc((size_t)file_size);
    if (!buf) return -ENOMEM;
    int64_t got = 0;
    while (got < file_size) {
        ssize_t n = pread(fd, buf + got, (size_t)(file_size - got), got);
        if (n < 0) {
            int e = errno;
            munmap(buf, (size_t)file_size);
            return -e;
        }
        if (n == 0) break;
        got += n;
    }
    *stale = 0;
    *markers = 0;
    for (int64_t o = 0; o < got; o++) {
        if ((o >= lo && o < hi) || buf[o] == 0) continue;
        *stale += 1;
        if (buf[o] == marker[o % 8]) *markers += 1;
    }
    munmap(buf, (size_t)file_size);
    return 0;
}

// A buffer of `len` bytes whose first `readable` bytes are readable and whose next byte
// starts a PROT_NONE page. `*base` and `*maplen` are what to munmap.
static unsigned char *guarded_buffer(int64_t len, int64_t readable, void **base, size_t *maplen) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = ((size_t)readable + page - 1) / page;
    if (data_pages == 0) data_pages = 1;
    // The guard covers the unreadable rest of the write, so no byte of it is mapped.
    size_t guard_pages = ((size_t)(len - readable) + page - 1) / page + 1;
    *maplen = (data_pages + guard_pages) * page;
    unsigned char *p = mmap(0, *maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 0;
    unsigned char *guard = p + data_pages * page;
    if (mprotect(guard, guard_pages * page, PROT_NONE) < 0) {
        munmap(p, *maplen);
        return 0;
    }
    memset(guard - readable, DATA_BYTE, (size_t)readable);
    *base = p;
    return guard - readable;
}

// Keeps the caller on the CPU it runs on, saving its affinity in `before`. Freed pages go
// back to the freeing CPU's lists first: staying on one CPU from the marker's release to the
// write makes it likelier that the write gets them. Returns whether it pinned.
static int pin_here(cpu_set_t *before) {
    cpu_set_t here;
    if (sched_getaffinity(0, sizeof *before, before) < 0) return 0;
    int cpu = sched_getcpu();
    if (cpu < 0) return 0;
    CPU_ZERO(&here);
    CPU_SET(cpu, &here);
    return sched_setaffinity(0, sizeof here, &here) == 0;
}

// The probe's write: `length` bytes at `offset` from a buffer readable for `readable`,
// right after the marker is sprayed and freed on this CPU. Returns what pwrite returned (or
// -errno), with the marker's frames in `pfns` (room for SPRAY_PAGES, or nil) and whether
// they showed in `shown`; -errno also when the buffer cannot be made.
static ssize_t short_write(int fd, int64_t offset, int64_t length, int64_t readable, uint64_t *pfns, int *shown) {
    void *base;
    size_t maplen;
    unsigned char *buf = guarded_buffer(length, readable, &base, &maplen);
    if (!buf) return -errno;
    cpu_set_t before;
    int pinned = pin_here(&before);
    *shown = spray_marker(pfns);
    ssize_t n = pwrite(fd, buf, (size_t)length, offset);
    ssize_t result = n < 0 ? -errno : n;
    if (pinned) (void)sched_setaffinity(0, sizeof before, &before);
    munmap(base, maplen);
    return result;
}

// The write and what it left, on an open file already laid out and out of the cache.
static int write_and_count(int fd, const struct cks_short_copy_params *p, struct cks_short_copy_attempt *out) {
    uint64_t *pfns = scratch_alloc(SPRAY_PAGES * sizeof *pfns);
    int shown = 0;
    ssize_t n = short_write(fd, p->offset, p->length, p->readable, pfns, &shown);
    out->write_result = n;
    int64_t hi = p->offset + (n > 0 ? n : 0);
    int rc = count_stale(fd, p->file_size, p->offset, hi, &out->stale_in_cache, &out->marker_in_cache);
    out->recycled = shown && rc == 0 ? page_is_one_of(fd, p->offset, pfns) : -1;
    if (pfns) munmap(pfns, SPRAY_PAGES * sizeof *pfns);
    if (rc < 0) return rc;
    if (fsync(fd) < 0) return -errno;
    if ((rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) != 0) return -rc;
    return count_stale(fd, p->file_size, p->offset, hi, &out->stale_on_disk, &out->marker_on_disk);
}

// Drops to `uid` (and its group) for good, then opens `path` and runs the write. Runs in
// a forked child; returns 0 or -errno.
static int unprivileged_attempt(const char *path, const struct cks_short_copy_params *p, struct cks_short_copy_attempt *out) {
    if (setgroups(0, 0) < 0 || setgid((gid_t)p->gid) < 0 || setuid((uid_t)p->uid) < 0) return -errno;
    if (setuid(0) == 0) return -EPERM;  // the drop must not be undoable
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    int rc = write_and_count(fd, p, out);
    close(fd);
    return rc;
}

struct child_report {
    int rc;
    struct cks_short_copy_attempt out;
};

// Forks a child for the unprivileged attempt and reads its report from a pipe.
static int run_as_user(const char *path, const struct cks_short_copy_params *p, struct cks_short_copy_attempt *out) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return -e;
    }
    if (pid == 0) {
        struct child_report r = {0};
        r.rc = unprivileged_attempt(path, p, &r.out);
        ssize_t w = write(fds[1], &r, sizeof r);
        _exit(w == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    struct child_report r;
    ssize_t got;
    do {
        got = read(fds[0], &r, sizeof r);
    } while (got < 0 && errno == EINTR);
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (got != (ssize_t)sizeof r) return -ECHILD;
    *out = r.out;
    return r.rc;
}

// A new file at `path`, `file_size` bytes of hole or (unwritten) of fallocated space, on
// disk and out of the cache.
static int lay_out(const char *path, const struct cks_short_copy_params *p) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = 0;
    if (p->unwritten ? fallocate(fd, 0, 0, p->file_size) < 0 : ftruncate(fd, p->file_size) < 0) rc = -errno;
    // The self-check's bytes: the marker, at the start of the file, outside every write.
    if (!rc && p->planted > 0) {
        unsigned char planted[4096];
        int64_t count = p->planted < (int64_t)sizeof planted ? p->planted : (int64_t)sizeof planted;
        for (int64_t o = 0; o < count; o++) planted[o] = marker[o % 8];
        if (pwrite(fd, planted, (size_t)count, 0) != (ssize_t)count) rc = errno ? -errno : -EIO;
    }
    // The unprivileged writer gets a file of its own.
    if (!rc && p->uid >= 0 && fchown(fd, (uid_t)p->uid, (gid_t)p->gid) < 0) rc = -errno;
    if (!rc && fsync(fd) < 0) rc = -errno;
    if (!rc) rc = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int cks_probe_short_copy(const char *path, const struct cks_short_copy_params *p, struct cks_short_copy_attempt *out) {
    memset(out, 0, sizeof *out);
    if (p->offset < 0 || p->length <= 0 || p->readable < 0 || p->readable > p->length || p->offset + p->length > p->file_size ||
        p->planted < 0 || p->planted > 4096 || (p->planted > 0 && p->planted > p->offset))
        return -EINVAL;
    int fd = lay_out(path, p);
    if (fd < 0) {
        unlink(path);
        return fd;
    }
    int rc;
    if (p->uid >= 0) {
        close(fd);
        rc = run_as_user(path, p, out);
    } else {
        rc = write_and_count(fd, p, out);
        close(fd);
    }
    unlink(path);
    return rc;
}

// ---- The EOF-growth variant (iomap kernel-probe short-copy --fs fuse) ----
//
// On a file system whose write-begin zeroes only blocks at or past EOF (FUSE's writeback
// cache since Linux 6.17), the uncopied rest of a short write lies past the new EOF. It is
// not visible there; it becomes visible when the file grows before writeback zeroes the EOF
// page's tail. So the attempt writes, looks at the EOF page through a mapping, grows the
// file, and reads everything back, before and after fsync and a cache drop. Every byte of
// the file is known (data, the write's readable part, the growth byte, zeroes), so a stale
// byte is one that differs from what it should be.

int cks_marker_byte(int64_t offset) { return marker[offset % 8]; }

int cks_eof_expected_byte(const struct cks_eof_short_copy_params *p, int64_t written, int64_t o) {
    if (p->growth == CKS_GROW_WRITE && o == p->grow_to - 1) return CKS_GROW_BYTE;
    if (written > 0 && o >= p->offset && o < p->offset + written) return CKS_DATA_BYTE;
    if (o < p->data_bytes) return CKS_FILE_BYTE;
    return 0;
}

// Counts the bytes of [lo, hi) of the file that differ from what they should be.
static int count_unexpected(int fd, const struct cks_eof_short_copy_params *p, int64_t written, int64_t size, int64_t *stale,
                            int64_t *markers) {
    unsigned char *buf = scratch_alloc((size_t)(size > 0 ? size : 1));
    if (!buf) return -ENOMEM;
    int64_t got = 0;
    while (got < size) {
        ssize_t n = pread(fd, buf + got, (size_t)(size - got), got);
        if (n < 0) {
            int e = errno;
            munmap(buf, (size_t)(size > 0 ? size : 1));
            return -e;
        }
        if (n == 0) break;
        got += n;
    }
    *stale = 0;
    *markers = 0;
    for (int64_t o = 0; o < got; o++) {
        if (buf[o] == cks_eof_expected_byte(p, written, o)) continue;
        *stale += 1;
        if (buf[o] == marker[o % 8]) *markers += 1;
    }
    munmap(buf, (size_t)(size > 0 ? size : 1));
    return 0;
}

// The bytes past EOF in the page holding EOF, through the mapping `m` of it at `start`:
// they should be zero. -1 when there is no mapping.
static void count_mapped_tail(const unsigned char *m, off_t start, int64_t size, int64_t *stale, int64_t *markers) {
    long page = sysconf(_SC_PAGESIZE);
    *stale = -1;
    *markers = -1;
    if (!m) return;
    *stale = 0;
    *markers = 0;
    for (int64_t o = size - start; o < page; o++) {
        unsigned char b = ((const volatile unsigned char *)m)[o];
        if (b == 0) continue;
        *stale += 1;
        if (b == marker[(start + o) % 8]) *markers += 1;
    }
}

// A new file at `path` holding data_bytes of CKS_FILE_BYTE, file_size long, on stable
// storage and out of the cache.
static int lay_out_eof(const char *path, const struct cks_eof_short_copy_params *p) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = 0;
    unsigned char chunk[4096];
    memset(chunk, CKS_FILE_BYTE, sizeof chunk);
    for (int64_t o = 0; !rc && o < p->data_bytes; o += (int64_t)sizeof chunk) {
        size_t n = (size_t)(p->data_bytes - o < (int64_t)sizeof chunk ? p->data_bytes - o : (int64_t)sizeof chunk);
        if (pwrite(fd, chunk, n, o) != (ssize_t)n) rc = errno ? -errno : -EIO;
    }
    if (!rc && ftruncate(fd, p->file_size) < 0) rc = -errno;
    if (!rc && fsync(fd) < 0) rc = -errno;
    if (!rc) rc = -posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

// Grows the file as the attempt asks; returns errno of a refused growth (the attempt goes
// on, reporting it) or 0.
static int grow(int fd, const struct cks_eof_short_copy_params *p) {
    int rc = 0;
    switch (p->growth) {
    case CKS_GROW_TRUNCATE:
        rc = ftruncate(fd, p->grow_to) < 0 ? errno : 0;
        break;
    case CKS_GROW_FALLOCATE:
        rc = fallocate(fd, 0, 0, p->grow_to) < 0 ? errno : 0;
        break;
    case CKS_GROW_WRITE: {
        unsigned char b = CKS_GROW_BYTE;
        rc = pwrite(fd, &b, 1, p->grow_to - 1) == 1 ? 0 : (errno ? errno : EIO);
        break;
    }
    default:
        break;
    }
    return rc;
}

// The canary's stale bytes: marker bytes stored just past EOF through `m`, a shared
// writable mapping of the EOF page at `start`.
static void plant_past_eof(unsigned char *m, off_t start, int64_t size, int64_t count) {
    long page = sysconf(_SC_PAGESIZE);
    if (count > page - (size - start)) count = page - (size - start);
    for (int64_t o = size; o < size + count; o++) m[o - start] = marker[o % 8];
}

// Maps the page holding EOF (nil when EOF is on a page boundary). Read-only, from a
// read-only descriptor: unmapping a mapping that may write makes FUSE write the file back
// (fuse_vma_close), and writeback zeroes the EOF page's tail, which would hide what the
// attempt looks for. The canary needs to store, so it maps writable and keeps the mapping
// until the reads are done.
static unsigned char *map_eof_page(const char *path, int fd, int64_t size, int writable, off_t *start) {
    long page = sysconf(_SC_PAGESIZE);
    if (size % page == 0) return 0;
    *start = (off_t)(size / page * page);
    int mfd = writable ? fd : open(path, O_RDONLY | O_CLOEXEC);
    if (mfd < 0) return 0;
    void *m = mmap(0, (size_t)page, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, mfd, *start);
    if (!writable) close(mfd);
    return m == MAP_FAILED ? 0 : m;
}

static int eof_attempt(const char *path, int fd, const struct cks_eof_short_copy_params *p, struct cks_eof_short_copy_attempt *out) {
    uint64_t *pfns = scratch_alloc(SPRAY_PAGES * sizeof *pfns);
    int shown = 0;
    ssize_t n = short_write(fd, p->offset, p->length, p->readable, pfns, &shown);
    out->write_result = n;
    int64_t written = n > 0 ? n : 0;
    struct stat st;
    if (fstat(fd, &st) < 0) return -errno;
    out->ino = (uint64_t)st.st_ino;
    out->size_after_write = st.st_size;
    long page = sysconf(_SC_PAGESIZE);
    off_t start = 0;
    unsigned char *m = map_eof_page(path, fd, st.st_size, p->planted > 0, &start);
    out->recycled = -1;
    if (m && shown) {
        uint64_t pfn;
        (void)*(volatile unsigned char *)m;
        frame_numbers(m, 1, &pfn);
        out->recycled = 0;
        for (size_t i = 0; pfn && i < SPRAY_PAGES; i++)
            if (pfns[i] == pfn) out->recycled = 1;
    }
    if (pfns) munmap(pfns, SPRAY_PAGES * sizeof *pfns);
    if (m && p->planted > 0) plant_past_eof(m, start, st.st_size, p->planted);
    count_mapped_tail(m, start, st.st_size, &out->stale_mapped, &out->marker_mapped);
    out->growth_errno = grow(fd, p);
    int rc = fstat(fd, &st) < 0 ? -errno : 0;
    out->final_size = st.st_size;
    if (!rc) rc = count_unexpected(fd, p, written, st.st_size, &out->stale_after_growth, &out->marker_after_growth);
    if (m) munmap(m, (size_t)page);
    if (rc < 0) return rc;
    if (fsync(fd) < 0) return -errno;
    if ((rc = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)) != 0) return -rc;
    return count_unexpected(fd, p, written, st.st_size, &out->stale_after_sync, &out->marker_after_sync);
}

int cks_probe_eof_short_copy(const char *path, const struct cks_eof_short_copy_params *p, struct cks_eof_short_copy_attempt *out) {
    memset(out, 0, sizeof *out);
    if (p->data_bytes < 0 || p->data_bytes > p->file_size || p->offset < 0 || p->length <= 0 || p->readable < 0 ||
        p->readable > p->length || p->grow_to < 0 || p->growth < CKS_GROW_NONE || p->growth > CKS_GROW_WRITE ||
        (p->growth != CKS_GROW_NONE && p->grow_to <= p->offset + p->length) || p->grow_to > (1LL << 30) || p->planted < 0 ||
        p->planted > 4096)
        return -EINVAL;
    int fd = lay_out_eof(path, p);
    if (fd < 0) {
        unlink(path);
        return fd;
    }
    int rc = eof_attempt(path, fd, p, out);
    close(fd);
    unlink(path);
    return rc;
}
