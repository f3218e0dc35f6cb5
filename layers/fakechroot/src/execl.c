/* The variadic exec functions (exported by naked Rust jumps, see variadic.rs): count the arguments, copy them to an array on the stack
 * (no malloc: these run in vfork children) and call the shim's exec path. */
#include <stdarg.h>
#include <stddef.h>

extern char **environ;
int scar_fc_execve(const char *path, char *const argv[], char *const envp[]);
int scar_fc_execvpe(const char *file, char *const argv[], char *const envp[]);

#define COLLECT(first, ap, argv, count)                        \
    size_t count = 1;                                          \
    va_start(ap, first);                                       \
    while (va_arg(ap, const char *) != NULL) count++;          \
    va_end(ap);                                                \
    const char *argv[count + 1];                               \
    argv[0] = first;                                           \
    va_start(ap, first);                                       \
    for (size_t i = 1; i <= count; i++) argv[i] = va_arg(ap, const char *);

int scar_fc_execl_c(const char *path, const char *arg, ...) {
    va_list ap;
    COLLECT(arg, ap, argv, n)
    va_end(ap);
    return scar_fc_execve(path, (char *const *)argv, environ);
}

int scar_fc_execlp_c(const char *file, const char *arg, ...) {
    va_list ap;
    COLLECT(arg, ap, argv, n)
    va_end(ap);
    return scar_fc_execvpe(file, (char *const *)argv, environ);
}

int scar_fc_execle_c(const char *path, const char *arg, ...) {
    va_list ap;
    COLLECT(arg, ap, argv, n)
    char *const *envp = va_arg(ap, char *const *);
    va_end(ap);
    return scar_fc_execve(path, (char *const *)argv, envp);
}
