/* Every path-taking call made through raw syscall(), as libuv, Rust's std and liburing make
 * them, printing only what a container program would see. Run under the shim and under a
 * real chroot; the two outputs must be equal. argv[1] is a scratch directory (container
 * path), argv[2] "io_uring" asks only for the io_uring check. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <linux/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* strerrorname_np is glibc 2.32+; the probe also runs on 2.31. */
static const char *errno_name(int e) {
    switch (e) {
    case ENOENT: return "ENOENT";
    case ENOSYS: return "ENOSYS";
    case ERANGE: return "ERANGE";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case EFAULT: return "EFAULT";
    case ELOOP: return "ELOOP";
    default: return "other";
    }
}

static void said(const char *what, long ret) {
    if (ret < 0)
        printf("%s: -1 %s (%d)\n", what, errno_name(errno), errno);
    else
        printf("%s: %ld\n", what, ret);
}

static void size_of(const char *what, const char *path, int flags) {
    struct statx sx;
    long ret = syscall(SYS_statx, AT_FDCWD, path, flags, STATX_SIZE | STATX_MODE, &sx);
    if (ret < 0)
        said(what, ret);
    else
        printf("%s: size %llu mode %o\n", what, (unsigned long long)sx.stx_size, sx.stx_mode);
}

static void contents(const char *what, long fd) {
    char buf[256];
    if (fd < 0) {
        said(what, fd);
        return;
    }
    ssize_t n = read((int)fd, buf, sizeof buf - 1);
    buf[n > 0 ? n : 0] = 0;
    printf("%s: %s", what, buf);
    close((int)fd);
}

static void link_of(const char *what, const char *path) {
    char buf[4096];
    long n = syscall(SYS_readlinkat, AT_FDCWD, path, buf, sizeof buf);
    if (n < 0)
        said(what, n);
    else
        printf("%s: %.*s (%ld)\n", what, (int)n, buf, n);
}

int main(int argc, char **argv) {
    if (getenv("PROBE_EMPTY_ARGV")) {
        /* Before 5.18 the kernel gives argc 0, since then argv[0] "": either is right. */
        printf("exec with no argv: %s\n",
               argc == 0 || (argc == 1 && argv[0][0] == 0) ? "none or empty" : argv[0]);
        return 0;
    }
    if (argc > 2 && strcmp(argv[2], "io_uring") == 0) {
        char params[120] = {0};
        said("io_uring_setup", syscall(SYS_io_uring_setup, 4, params));
        return 0;
    }
    const char *image_file = "/etc/scar-test-image";
    size_of("statx", image_file, 0);
    size_of("statx nofollow link", "/usr/bin/awk", AT_SYMLINK_NOFOLLOW);
    size_of("statx through absolute links", "/usr/bin/awk", 0);
    size_of("statx host-only path", "/work/main/Cargo.toml", 0);
    struct stat st;
#ifdef SYS_newfstatat
    said("newfstatat", syscall(SYS_newfstatat, AT_FDCWD, image_file, &st, 0) == 0 ? (long)st.st_size : -1);
#else
    said("newfstatat", syscall(SYS_fstatat, AT_FDCWD, image_file, &st, 0) == 0 ? (long)st.st_size : -1);
#endif
    contents("openat", syscall(SYS_openat, AT_FDCWD, image_file, O_RDONLY));
    struct open_how how = {.flags = O_RDONLY};
    contents("openat2", syscall(SYS_openat2, AT_FDCWD, image_file, &how, sizeof how));
    said("faccessat", syscall(SYS_faccessat, AT_FDCWD, image_file, R_OK));
    said("faccessat2", syscall(SYS_faccessat2, AT_FDCWD, image_file, R_OK, 0));
    said("faccessat2 host-only", syscall(SYS_faccessat2, AT_FDCWD, "/work", R_OK, 0));
    link_of("readlinkat", "/usr/bin/awk");
    int fd = inotify_init1(IN_CLOEXEC);
    said("inotify_add_watch", syscall(SYS_inotify_add_watch, fd, image_file, IN_MODIFY) > 0 ? 1 : -1);
    close(fd);

    /* Relative to a directory descriptor and to the cwd, with .. */
    long etc = syscall(SYS_openat, AT_FDCWD, "/etc", O_RDONLY | O_DIRECTORY);
    size_of("statx relative", "../etc/scar-test-image", 0);
    struct statx sx;
    said("statx dirfd", syscall(SYS_statx, etc, "scar-test-image", 0, STATX_SIZE, &sx) == 0 ? (long)sx.stx_size : -1);
    said("statx dirfd ..", syscall(SYS_statx, etc, "../etc/scar-test-image", 0, STATX_SIZE, &sx) == 0 ? (long)sx.stx_size : -1);
    said("statx empty path", syscall(SYS_statx, etc, "", AT_EMPTY_PATH, STATX_MODE, &sx) == 0 ? (long)(sx.stx_mode & S_IFMT) : -1);
    close((int)etc);

    said("chdir", syscall(SYS_chdir, "/usr/share"));
    char cwd[4096];
    long n = syscall(SYS_getcwd, cwd, sizeof cwd);
    printf("getcwd: %ld %s\n", n, n > 0 ? cwd : "");
    said("getcwd small buffer", syscall(SYS_getcwd, cwd, 4));

    /* Changes in the scratch directory. */
    const char *scratch = argv[1];
    if (chdir(scratch) != 0) {
        perror("scratch");
        return 2;
    }
    said("mkdirat", syscall(SYS_mkdirat, AT_FDCWD, "d", 0755));
    said("symlinkat absolute", syscall(SYS_symlinkat, image_file, AT_FDCWD, "d/abs"));
    link_of("readlinkat own link", "d/abs");
    size_of("statx through own link", "d/abs", 0);
    said("symlinkat climbing", syscall(SYS_symlinkat, "../../../../../../etc/scar-test-image", AT_FDCWD, "d/up"));
    size_of("statx through climbing link", "d/up", 0);
    int out = open("d/f", O_CREAT | O_WRONLY, 0600);
    close(out);
    said("fchmodat", syscall(SYS_fchmodat, AT_FDCWD, "d/f", 0640));
    size_of("statx after fchmodat", "d/f", 0);
    struct timespec times[2] = {{.tv_sec = 1000000000}, {.tv_sec = 1000000000}};
    said("utimensat", syscall(SYS_utimensat, AT_FDCWD, "d/f", times, 0));
    said("utimensat seen", stat("d/f", &st) == 0 ? (long)st.st_mtime : -1);
    said("renameat2", syscall(SYS_renameat2, AT_FDCWD, "d/f", AT_FDCWD, "d/g", 0));
    said("linkat", syscall(SYS_linkat, AT_FDCWD, "d/g", AT_FDCWD, "d/h", 0));
    said("link count", stat("d/g", &st) == 0 ? (long)st.st_nlink : -1);
    said("fchownat to self", syscall(SYS_fchownat, AT_FDCWD, "d/g", getuid(), getgid(), 0));
    said("unlinkat", syscall(SYS_unlinkat, AT_FDCWD, "d/g", 0));
    said("unlinkat", syscall(SYS_unlinkat, AT_FDCWD, "d/h", 0));
    said("unlinkat", syscall(SYS_unlinkat, AT_FDCWD, "d/abs", 0));
    said("unlinkat", syscall(SYS_unlinkat, AT_FDCWD, "d/up", 0));
    said("unlinkat dir", syscall(SYS_unlinkat, AT_FDCWD, "d", AT_REMOVEDIR));
    /* The kernel refuses an empty buffer before it looks at the link. */
    char none[1];
    said("readlinkat size 0", syscall(SYS_readlinkat, AT_FDCWD, "/usr/bin/awk", none, 0));
    said("readlink size 0", readlink("/usr/bin/awk", none, 0));
    said("readlink no buffer", readlink("/usr/bin/awk", NULL, 16));
#ifdef SYS_stat
    said("legacy stat", syscall(SYS_stat, image_file, &st) == 0 ? (long)st.st_size : -1);
    said("legacy access", syscall(SYS_access, image_file, R_OK));
    contents("legacy open", syscall(SYS_open, image_file, O_RDONLY));
    char target[4096];
    n = syscall(SYS_readlink, "/usr/bin/awk", target, sizeof target);
    printf("legacy readlink: %.*s\n", (int)(n > 0 ? n : 0), target);
#endif
    fflush(stdout);
#ifndef __aarch64__
    /* Not on aarch64, which the suite runs under qemu-user: there the emulator itself, the
     * ground truth's kernel, hands a program run with no argv its own path. */
    pid_t child = fork();
    if (child == 0) {
        setenv("PROBE_EMPTY_ARGV", "1", 1);
        execve("/proc/self/exe", NULL, environ);
        _exit(127);
    }
    int status = 0;
    waitpid(child, &status, 0);
    said("exec with no argv, status", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
#endif
    char *echo[] = {"echo", "execve through syscall()", NULL};
    said("execve", syscall(SYS_execve, "/bin/echo", echo, environ));
    return 1;
}
