/* POSIX named semaphores and shared memory as Python's multiprocessing, joblib and
 * PostgreSQL use them: made, opened again by name, shared with a child, closed, unlinked,
 * and the names libc refuses. libc makes their files in /dev/shm by an internal call no
 * interposer sees, and Lambda has no /dev/shm: the shim implements them over the image's.
 * What is printed is compared with a real chroot's. The names carry the process id:
 * chroot's side shares the host's /dev/shm with other probes running at once. */
#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, int ok) {
    printf("%s: %s\n", what, ok ? "ok" : strerror(errno));
}

static void value(const char *what, sem_t *sem) {
    int v = -1;
    sem_getvalue(sem, &v);
    printf("%s: %d\n", what, v);
}

int main(void) {
    setvbuf(stdout, NULL, _IONBF, 0);
    char sem_name[32], mem_name[32];
    snprintf(sem_name, sizeof sem_name, "/probe-%d", (int)getpid());
    snprintf(mem_name, sizeof mem_name, "/probe-mem-%d", (int)getpid());
    sem_unlink(sem_name);
    shm_unlink(mem_name);

    sem_t *made = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 2);
    report("create", made != SEM_FAILED);
    value("initial value", made);
    report("create again, exclusive", sem_open(sem_name, O_CREAT | O_EXCL, 0600, 0) != SEM_FAILED);
    sem_t *by_name = sem_open(sem_name, 0);
    report("open by name", by_name != SEM_FAILED);
    sem_t *existing = sem_open(sem_name + 1, O_CREAT, 0600, 9);
    report("create, existing", existing != SEM_FAILED);
    value("value through the second open", existing);
    /* libc hands every open of one semaphore in a process the same address, and unmaps it
     * at the last close. */
    printf("one address: %d %d\n", by_name == made, existing == made);
    sem_t *third = sem_open(sem_name, 0);
    report("close one of three opens", sem_close(third) == 0);
    value("still open twice", made);
    report("open a missing one", sem_open("/missing", 0) != SEM_FAILED);
    report("a name with a slash", sem_open("/a/b", O_CREAT, 0600, 1) != SEM_FAILED);
    report("a value past SEM_VALUE_MAX", sem_open("/big", O_CREAT, 0600, 0x80000000u) != SEM_FAILED);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    report("a name of 299 bytes", sem_open(long_name, O_CREAT, 0600, 1) != SEM_FAILED);

    /* A child opens it by name, takes both units and posts three. */
    pid_t pid = fork();
    if (pid == 0) {
        sem_t *sem = sem_open(sem_name, 0);
        if (sem != made) _exit(2);
        sem_wait(sem);
        sem_wait(sem);
        sem_post(sem);
        sem_post(sem);
        sem_post(sem);
        _exit(sem == SEM_FAILED);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("child: %d\n", status);
    sem_wait(by_name);
    sem_wait(by_name);
    value("after the child and two waits", made);
    report("close", sem_close(by_name) == 0);
    report("unlink", sem_unlink(sem_name) == 0);
    report("unlink again", sem_unlink(sem_name) == 0);
    value("still usable once unlinked", made);
    report("close the second", sem_close(existing) == 0);
    report("close the last", sem_close(made) == 0);

    int fd = shm_open(mem_name, O_CREAT | O_RDWR, 0600);
    report("shm_open", fd >= 0);
    report("ftruncate", ftruncate(fd, 4096) == 0);
    char *mem = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (fork() == 0) {
        int again = shm_open(mem_name + 1, O_RDWR, 0);
        char *shared = mmap(0, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, again, 0);
        if (shared != MAP_FAILED)
            strcpy(shared, "written by the child");
        _exit(0);
    }
    wait(&status);
    printf("shared: %s\n", mem == MAP_FAILED ? "(not mapped)" : mem);
    struct stat st;
    fstat(fd, &st);
    printf("size %lld, mode %o, close-on-exec %d\n", (long long)st.st_size, st.st_mode & 0777,
           (fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);
    report("shm_open again, exclusive", shm_open(mem_name, O_CREAT | O_EXCL | O_RDWR, 0600) >= 0);
    report("shm_unlink", shm_unlink(mem_name) == 0);
    report("shm_unlink again", shm_unlink(mem_name) == 0);
    report("shm_open of a nested name", shm_open("/x/y", O_RDONLY, 0) >= 0);
    report("shm_open of no name", shm_open("/", O_RDONLY, 0) >= 0);
    return 0;
}
