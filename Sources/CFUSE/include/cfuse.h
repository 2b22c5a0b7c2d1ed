// Counterpart: include/uapi/linux/fuse.h (the wire structures) and the few system calls of
// fs/fuse/dev.c (the FUSE_DEV_IOC_CLONE ioctl) and fs/namespace.c (mount(2), umount2(2))
// that Swift cannot reach by itself.
//
// Why a C target: Swift imports the protocol's structs from the kernel's UAPI header exactly
// as the kernel lays them out (so the daemon never hand-writes an offset), but it cannot
// import function-like macros such as FUSE_DEV_IOC_CLONE's _IOR(), nor call an ioctl that
// takes a pointer without a variadic shim. Every function returns >= 0 on success and
// -errno on failure, so Swift never reads the thread-local errno, which its runtime may
// clobber between calls.

#ifndef CFUSE_H
#define CFUSE_H

#include <linux/fuse.h>
#include <stddef.h>
#include <stdint.h>

// Bits newer than this header's protocol (7.38), with the kernel's values. The 64-bit INIT
// flags travel as `flags` (low word) and `flags2` (high word, only with FUSE_INIT_EXT).
// FUSE_DIRECT_IO_ALLOW_MMAP is bit 36: bit 4 of flags2 (kernel 6.6+).
enum {
    CFUSE_FLAGS2_DIRECT_IO_ALLOW_MMAP = 1u << (36 - 32),
};

/// struct fuse_dirent without its flexible name (which Swift cannot copy as a value): the
/// fixed part of a READDIR entry, checked against the kernel's FUSE_NAME_OFFSET.
struct cfuse_dirent_head {
    uint64_t ino;
    uint64_t off;
    uint32_t namelen;
    uint32_t type;
};
_Static_assert(sizeof(struct cfuse_dirent_head) == FUSE_NAME_OFFSET, "fuse_dirent's fixed part");

/// The kernel's minimum read buffer for /dev/fuse (FUSE_MIN_READ_BUFFER).
enum { CFUSE_MIN_READ_BUFFER = 8192 };

/// Opens /dev/fuse read-write, close-on-exec. Returns the descriptor.
int cfuse_open_device(void);

/// Opens a new /dev/fuse descriptor attached to the connection `session_fd` serves
/// (ioctl FUSE_DEV_IOC_CLONE): its own processing queue, the connection's input queue.
int cfuse_clone_device(int session_fd);

/// write(2) of one reply: the bytes written, or -errno.
long cfuse_write(int fd, const void *buffer, size_t size);

/// mount(2).
int cfuse_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data);

/// umount2(2); `lazy` adds MNT_DETACH.
int cfuse_umount(const char *target, int lazy);

/// The mount flags the options map to.
enum {
    CFUSE_MS_RDONLY = 1,
    CFUSE_MS_NOSUID = 2,
    CFUSE_MS_NODEV = 4,
    CFUSE_MS_NOEXEC = 8,
};

/// Makes a pipe and installs a handler for each of `signals` that writes the signal's
/// number, one byte, to its write end (non-blocking): a thread reading the returned read end
/// then acts on the signal with none of a signal handler's restrictions.
int cfuse_signals_to_pipe(const int *signals, int count);

/// A pipe whose read end is close-on-exec and whose write end is not: the write end is for a
/// child to inherit. `fds[0]` is the read end.
int cfuse_inheritable_pipe(int fds[2]);

/// The descriptor a spawned daemon finds its `keep_fd` at.
enum { CFUSE_DAEMON_KEPT_FD = 3 };

/// Starts `path` with `argv` (NULL-terminated) as a daemon: in a new session (setsid), with
/// standard input and output on /dev/null, standard error appended to `log_path` (or
/// /dev/null when it is NULL), `keep_fd` as descriptor 3 and no other descriptor (whatever
/// the starting process inherited stays out: a test harness that waits for a descriptor to
/// close, as Foundation's Process does, would otherwise wait for the daemon), and the
/// default signal mask and dispositions. Returns the child's pid.
int cfuse_spawn_daemon(const char *path, char *const argv[], const char *log_path, int keep_fd);

/// Ignores SIGPIPE (a reply written to a connection that went away must not kill the daemon).
void cfuse_ignore_sigpipe(void);

/// Mounts through `fusermount` (Debian's fusermount3, set-user-id root) for a user who may
/// not call mount(2): runs `fusermount -o OPTIONS -- TARGET` with the environment variable
/// _FUSE_COMMFD naming one end of a unix socket pair, and receives on the other end the
/// /dev/fuse descriptor it opened and mounted with (SCM_RIGHTS), close-on-exec. Waits for it
/// to exit. Returns the descriptor, or -errno (EIO: fusermount failed; its standard error is
/// in `message`, NUL-terminated, truncated to `size`; `status` gets its wait status).
int cfuse_fusermount_mount(const char *fusermount, const char *options, const char *target, char *message, size_t size,
                           int *status);

/// Whether the block device at `path` is read-only (ioctl BLKROGET): 1, 0, or -errno.
/// Linux lets a read-only block device be opened for writing and fails each write (EPERM),
/// so opening it is no test.
int cfuse_block_device_read_only(const char *path);

/// Runs `fusermount -u [-z] -- TARGET` and waits: its wait status, or -errno; its standard
/// error in `message` as above.
int cfuse_fusermount_unmount(const char *fusermount, const char *target, int lazy, char *message, size_t size);

#endif
