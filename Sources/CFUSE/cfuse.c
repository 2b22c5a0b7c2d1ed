// Counterpart: see include/cfuse.h.

#define _GNU_SOURCE
#include "cfuse.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
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

/// Spawns `argv[0]` with standard input on /dev/null, standard error on `err_fd` and the
/// environment `envp`; returns the pid or -errno.
static int spawn_with_stderr(char *const argv[], char *const envp[], int err_fd) {
    posix_spawn_file_actions_t fa;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc != 0) return -rc;
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
    pid_t pid;
    rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
    posix_spawn_file_actions_destroy(&fa);
    return rc == 0 ? (int)pid : -rc;
}

/// Reads `fd` to its end into `message` (NUL-terminated, the rest dropped), then closes it.
static void drain(int fd, char *message, size_t size) {
    size_t at = 0;
    char scratch[256];
    for (;;) {
        char *into = at + 1 < size ? message + at : scratch;
        size_t room = at + 1 < size ? size - 1 - at : sizeof scratch;
        ssize_t n = read(fd, into, room);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (into != scratch) at += (size_t)n;
    }
    if (size > 0) message[at < size ? at : size - 1] = 0;
    close(fd);
}

static int wait_for(pid_t pid) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    return status;
}

/// The descriptor a SCM_RIGHTS message on `sock` carries, or -1 (the sender closed first).
static int receive_fd(int sock) {
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof control.space;
    ssize_t n;
    do {
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) return -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            return fd;
        }
    }
    return -1;
}

int cfuse_fusermount_mount(const char *fusermount, const char *options, const char *target, char *message, size_t size,
                           int *status) {
    if (size > 0) message[0] = 0;
    *status = 0;
    int sv[2], errp[2];
    // sv[0] is the child's end: inherited (no close-on-exec), named by _FUSE_COMMFD.
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return -errno;
    if (fcntl(sv[1], F_SETFD, FD_CLOEXEC) != 0 || pipe2(errp, O_CLOEXEC) != 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return -e;
    }
    size_t n = 0;
    while (environ[n] != NULL) n++;
    char **envp = calloc(n + 2, sizeof *envp);
    char commfd[32];
    snprintf(commfd, sizeof commfd, "_FUSE_COMMFD=%d", sv[0]);
    size_t k = 0;
    for (size_t i = 0; i < n && envp != NULL; i++) {
        if (strncmp(environ[i], "_FUSE_COMMFD=", 13) != 0) envp[k++] = environ[i];
    }
    int pid = -ENOMEM;
    if (envp != NULL) {
        envp[k++] = commfd;
        envp[k] = NULL;
        char *argv[] = {(char *)fusermount, "-o", (char *)options, "--", (char *)target, NULL};
        pid = spawn_with_stderr(argv, envp, errp[1]);
        free(envp);
    }
    close(sv[0]);
    close(errp[1]);
    if (pid < 0) {
        close(sv[1]);
        close(errp[0]);
        return pid;
    }
    int fd = receive_fd(sv[1]);
    close(sv[1]);
    drain(errp[0], message, size);
    int ws = wait_for(pid);
    *status = ws < 0 ? 0 : ws;
    if (fd >= 0 && ws >= 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0) return fd;
    if (fd >= 0) close(fd);
    return ws < 0 ? ws : -EIO;
}

int cfuse_fusermount_unmount(const char *fusermount, const char *target, int lazy, char *message, size_t size) {
    if (size > 0) message[0] = 0;
    int errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0) return -errno;
    char *lazy_argv[] = {(char *)fusermount, "-u", "-z", "--", (char *)target, NULL};
    char *argv[] = {(char *)fusermount, "-u", "--", (char *)target, NULL};
    int pid = spawn_with_stderr(lazy ? lazy_argv : argv, environ, errp[1]);
    close(errp[1]);
    if (pid < 0) {
        close(errp[0]);
        return pid;
    }
    drain(errp[0], message, size);
    return wait_for(pid);
}

int cfuse_block_device_read_only(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    int ro = 0;
    int rc = ioctl(fd, BLKROGET, &ro);
    int e = errno;
    close(fd);
    return rc == 0 ? (ro != 0) : -e;
}
