// Counterpart: see include/cfuse.h.

#define _GNU_SOURCE
#include "cfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

int cfuse_open_device(void) {
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int cfuse_clone_device(int session_fd) {
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint32_t master = (uint32_t)session_fd;
    if (ioctl(fd, FUSE_DEV_IOC_CLONE, &master) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

long cfuse_read(int fd, void *buffer, size_t size) {
    ssize_t n = read(fd, buffer, size);
    return n < 0 ? -errno : (long)n;
}

long cfuse_write(int fd, const void *buffer, size_t size) {
    ssize_t n = write(fd, buffer, size);
    return n < 0 ? -errno : (long)n;
}

int cfuse_mount(const char *source, const char *target, const char *type, unsigned long flags, const char *data) {
    unsigned long ms = 0;
    if (flags & CFUSE_MS_RDONLY) ms |= MS_RDONLY;
    if (flags & CFUSE_MS_NOSUID) ms |= MS_NOSUID;
    if (flags & CFUSE_MS_NODEV) ms |= MS_NODEV;
    if (flags & CFUSE_MS_NOEXEC) ms |= MS_NOEXEC;
    return mount(source, target, type, ms, data) == 0 ? 0 : -errno;
}

int cfuse_umount(const char *target, int lazy) {
    return umount2(target, lazy ? MNT_DETACH : 0) == 0 ? 0 : -errno;
}

extern char **environ;

static volatile int signal_pipe = -1;

static void to_pipe(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (signal_pipe >= 0) (void)!write(signal_pipe, &b, 1);
    errno = saved;
}

int cfuse_signals_to_pipe(const int *signals, int count) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return -errno;
    if (fcntl(fds[1], F_SETFL, O_NONBLOCK) != 0) return -errno;
    signal_pipe = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = to_pipe;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < count; i++) {
        if (sigaction(signals[i], &sa, NULL) != 0) return -errno;
    }
    return fds[0];
}

int cfuse_inheritable_pipe(int fds[2]) {
    if (pipe(fds) != 0) return -errno;
    if (fcntl(fds[0], F_SETFD, FD_CLOEXEC) != 0) return -errno;
    return 0;
}

int cfuse_spawn_daemon(const char *path, char *const argv[], const char *log_path, int keep_fd) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return -rc;
    rc = posix_spawnattr_init(&attr);
    if (rc != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return -rc;
    }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, log_path ? log_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, keep_fd, CFUSE_DAEMON_KEPT_FD);
    posix_spawn_file_actions_addclosefrom_np(&fa, CFUSE_DAEMON_KEPT_FD + 1);
    sigset_t none, reset;
    sigemptyset(&none);
    sigemptyset(&reset);
    int defaults[] = {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) sigaddset(&reset, defaults[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &reset);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc == 0 ? (int)pid : -rc;
}

void cfuse_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }
