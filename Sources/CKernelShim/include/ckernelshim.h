// Thin syscall wrappers for the kernel side of the differential tester (IOMapTesting's
// KernelFile). Every function returns >= 0 on success and -errno on failure, so Swift never
// has to read the thread-local `errno` (which the Swift runtime may clobber between calls).
//
// The header itself needs no feature macros: only fixed-width types cross the boundary.
// shim.c defines _GNU_SOURCE for SEEK_DATA, SEEK_HOLE, fallocate and copy_file_range,
// which Swift's Glibc module does not export.

#ifndef CKERNELSHIM_H
#define CKERNELSHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/xattr.h>

/// fallocate modes, as small codes so Swift need not know the FALLOC_FL_* bits.
enum {
    CKS_FALLOC_ALLOCATE = 0,             // mode 0: allocate, extend i_size
    CKS_FALLOC_ALLOCATE_KEEP_SIZE = 1,   // FALLOC_FL_KEEP_SIZE
    CKS_FALLOC_PUNCH_HOLE = 2,           // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE (required pair)
    CKS_FALLOC_ZERO_RANGE = 3,           // FALLOC_FL_ZERO_RANGE
    CKS_FALLOC_ZERO_RANGE_KEEP_SIZE = 4, // FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE
};

/// Opens `path` O_RDWR|O_CREAT|O_TRUNC|O_CLOEXEC, mode 0644. Returns the fd.
int cks_open(const char *path);
int cks_close(int fd);

/// pwrite until all `count` bytes are written. Returns the bytes written (short only if an
/// error stopped a partly done write), or -errno if nothing was written.
int64_t cks_pwrite(int fd, const void *buf, size_t count, int64_t offset);
/// pread until `count` bytes or EOF. Returns the bytes read (short at EOF), or -errno.
int64_t cks_pread(int fd, void *buf, size_t count, int64_t offset);
/// One pwrite(2), not retried: what it returned (a short count included), or -errno. The race
/// on a real file (RaceOnFile.swift) must see the short count a faulting buffer gives.
int64_t cks_pwrite_once(int fd, const void *buf, size_t count, int64_t offset);

int cks_ftruncate(int fd, int64_t length);
/// `mode` is one of the CKS_FALLOC_* codes; an unknown code is -EINVAL.
int cks_fallocate(int fd, int mode, int64_t offset, int64_t length);
/// copy_file_range from `src` to `dst` within `fd`, with `length` first clamped to the
/// source's current EOF, looping until that many bytes are copied or a call copies 0.
/// Returns the bytes copied, or -errno if nothing was copied.
int64_t cks_copy_range(int fd, int64_t src, int64_t dst, int64_t length);

int64_t cks_seek_data(int fd, int64_t offset);
int64_t cks_seek_hole(int fd, int64_t offset);
int cks_fsync(int fd);
/// The file size from fstat.
int64_t cks_size(int fd);
/// posix_fadvise(POSIX_FADV_DONTNEED) over the whole file: drops clean page-cache pages.
int cks_drop_cache(int fd);
/// The pages of the first `length` bytes of the file that are in the page cache (mincore
/// over a shared mapping, which faults nothing in), or -errno.
int64_t cks_resident_pages(int fd, int64_t length);
/// statfs f_type of the file system holding `fd`, stored in `*type`.
int cks_fs_type(int fd, uint64_t *type);

/// Stores `count` bytes at `offset` through a MAP_SHARED mapping, then msync(MS_SYNC).
/// A range reaching past the page holding EOF would raise SIGBUS; it is -EFAULT instead.
int cks_mapped_store(int fd, const void *buf, size_t count, int64_t offset);
/// Loads `count` bytes at `offset` through a MAP_SHARED mapping; same SIGBUS rule.
int cks_mapped_load(int fd, void *buf, size_t count, int64_t offset);

/// malloc_trim(0): returns the allocator's free memory to the kernel, so that `iomap bench`
/// can measure the resident memory one step adds. Swift's Glibc module lacks <malloc.h>.
/// Returns 1 when memory was released, else 0.
int cks_malloc_trim(void);

/// Binds thread `tid` (0: the calling thread) to CPU `cpu`, or, with `cpu` < 0, lets it run
/// on every CPU again: what `iomap bench` uses to put a writer and the FUSE daemon's threads
/// on one CPU. Swift cannot build a cpu_set_t (CPU_SET is a macro). Returns 0 or -errno.
int cks_bind_cpu(int tid, int cpu);

/// The calling thread's id (gettid).
int cks_thread_id(void);

/// How one attempt of the EOF-block probe went (eofprobe.c).
struct cks_probe_attempt {
    /// The store landed while the write's reservation was visible (race: fstat's block count
    /// had grown) or while the write was stalled in its pre-fault (userfaultfd).
    int window_hit;
    /// The stored bytes read back as something else after msync, fsync and a cache drop.
    int lost;
    /// What the write returned: bytes written, or -errno.
    int64_t write_result;
};

enum { CKS_PROBE_RACE = 0, CKS_PROBE_USERFAULTFD = 1 };

/// One attempt of the EOF-block probe on a new file at `path` (removed afterwards): 4 KiB at
/// 0, fsync, ftruncate to `isize`; a write of 4 KiB at 5120 that fails with nothing written
/// while 8 bytes are stored through a shared mapping at `store_offset`. Returns 0 or -errno.
int cks_probe_eof_block(const char *path, int64_t isize, int64_t store_offset, int method, struct cks_probe_attempt *out);

/// One write of the short-copy probe (shortcopyprobe.c).
struct cks_short_copy_params {
    /// The file's size: all of it a hole, or (`unwritten`) fallocated.
    int64_t file_size;
    int unwritten;
    /// The write: `length` bytes at `offset`, of which the first `readable` can be read from
    /// the user buffer; the next byte starts a PROT_NONE page.
    int64_t offset;
    int64_t length;
    int64_t readable;
    /// When >= 0, the write and the reads run in a child process as this uid and gid, on a
    /// file it owns (the caller must be root).
    int64_t uid;
    int64_t gid;
    /// A self-check of the counting: this many marker bytes (at most 4096, all below
    /// `offset`) are written at the start of the file when it is laid out, and must be
    /// counted as stale. 0 in a real attempt.
    int64_t planted;
};

/// What one attempt of the short-copy probe found. Stale bytes: not zero, and outside the
/// bytes the write reported written.
struct cks_short_copy_attempt {
    /// What pwrite returned: bytes written, or -errno.
    int64_t write_result;
    /// Read back through the page cache right after the write.
    int64_t stale_in_cache;
    /// Read back after fsync and a cache drop.
    int64_t stale_on_disk;
    /// Of those, the bytes equal to the marker the attempt filled freed memory with.
    int64_t marker_in_cache;
    int64_t marker_on_disk;
    /// Whether the page-cache page holding the write's offset was one of the pages the
    /// marker was freed from: 1 or 0, or -1 when frame numbers do not show (they need
    /// CAP_SYS_ADMIN, so never in the unprivileged child).
    int recycled;
};

/// One attempt of the short-copy probe on a new file at `path` (removed afterwards): lay the
/// file out, fsync, drop its cache, fill and free anonymous memory with a marker, write, and
/// count stale bytes in the cache and on disk. Returns 0 or -errno (-ECHILD: the child
/// sent no report).
int cks_probe_short_copy(const char *path, const struct cks_short_copy_params *params, struct cks_short_copy_attempt *out);

/// How the EOF-growth variant of the short-copy probe grows the file after its write.
enum { CKS_GROW_NONE = 0, CKS_GROW_TRUNCATE = 1, CKS_GROW_FALLOCATE = 2, CKS_GROW_WRITE = 3 };

/// One write of the EOF-growth variant (shortcopyprobe.c): a new file holds `data_bytes` of
/// CKS_FILE_BYTE and is `file_size` long (a hole after the data); a write of `length` bytes
/// at `offset`, `readable` of them readable; then the file grows to `grow_to` by `growth`
/// (CKS_GROW_WRITE: one CKS_GROW_BYTE written at grow_to - 1).
struct cks_eof_short_copy_params {
    int64_t data_bytes;
    int64_t file_size;
    int64_t offset;
    int64_t length;
    int64_t readable;
    int growth;
    int64_t grow_to;
    /// The probe's canary: after the write, this many marker bytes are stored through a
    /// shared mapping just past the new EOF, in the EOF page, as stale memory would lie
    /// there; they must be counted. 0 in a real attempt.
    int64_t planted;
};

/// The bytes a file of the EOF-growth variant holds where nothing went wrong.
enum { CKS_FILE_BYTE = 0x11, CKS_DATA_BYTE = 0x77, CKS_GROW_BYTE = 0x22 };

/// What one attempt of the EOF-growth variant found. Stale bytes: those that differ from
/// what the file should hold (cks_eof_expected_byte); marker bytes: of those, the ones equal
/// to the marker freed memory was filled with.
struct cks_eof_short_copy_attempt {
    int64_t write_result;
    /// The file's size after the write, and at the end.
    int64_t size_after_write;
    int64_t final_size;
    /// Through a shared read-only mapping of the page holding the new EOF, before the
    /// growth: the page's bytes past EOF (-1: no mapping could be made, or EOF is on a page
    /// boundary).
    int64_t stale_mapped;
    int64_t marker_mapped;
    /// read(2) of the whole file after the growth, before any fsync.
    int64_t stale_after_growth;
    int64_t marker_after_growth;
    /// read(2) after fsync and a cache drop (the daemon's, or the disk's, copy).
    int64_t stale_after_sync;
    int64_t marker_after_sync;
    /// errno of a growth the file system refused (EOPNOTSUPP for a fallocate), else 0.
    int64_t growth_errno;
    /// The file's inode number, to match what a FUSE daemon recorded.
    uint64_t ino;
    /// Whether the page-cache page under the write's end was one the marker was freed from:
    /// 1 or 0, or -1 when frame numbers do not show (they need CAP_SYS_ADMIN).
    int recycled;
};

/// One attempt of the EOF-growth variant on a new file at `path` (removed afterwards).
/// Returns 0 or -errno.
int cks_probe_eof_short_copy(const char *path, const struct cks_eof_short_copy_params *params, struct cks_eof_short_copy_attempt *out);

/// The byte at `offset` of the file an attempt leaves when its write returned `written`.
int cks_eof_expected_byte(const struct cks_eof_short_copy_params *params, int64_t written, int64_t offset);

/// The marker byte that belongs at file offset `offset` (freed memory is filled with it).
int cks_marker_byte(int64_t offset);

#endif
