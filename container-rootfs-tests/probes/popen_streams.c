/* Several popen streams open at once, in both directions, with and without "e", and
 * system() while they are open: what POSIX and glibc promise, printed so that the shim's
 * output can be compared with a real chroot's. argv[1] is a scratch directory. A child
 * that inherited another stream's write end would never see end of input: the caller runs
 * this under a timeout. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int cloexec(FILE *f) { return (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) != 0; }

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0) {
        perror("scratch");
        return 2;
    }
    setvbuf(stdout, NULL, _IONBF, 0);
    /* Two writers: the first is closed while the second is open. */
    FILE *a = popen("cat > a.txt", "w");
    FILE *b = popen("cat > b.txt", "we");
    printf("cloexec: w=%d we=%d\n", cloexec(a), cloexec(b));
    fputs("to a\n", a);
    fputs("to b\n", b);
    int sa = pclose(a);
    int sb = pclose(b);
    printf("pclose: %d %d\n", WEXITSTATUS(sa), WEXITSTATUS(sb));
    system("cat a.txt b.txt");

    /* Two readers and a writer at once, closed in the order they were opened. */
    FILE *r1 = popen("echo one; exit 3", "r");
    FILE *w = popen("wc -l > w.txt", "w");
    FILE *r2 = popen("echo two", "re");
    char line[64];
    fputs("x\ny\n", w);
    printf("r2: %s", fgets(line, sizeof line, r2) ? line : "(none)\n");
    printf("r1: %s", fgets(line, sizeof line, r1) ? line : "(none)\n");
    /* The writer is still open: system()'s shell must not hold it either. */
    printf("system: %d\n", WEXITSTATUS(system("exit 4")));
    printf("pclose r1: %d\n", WEXITSTATUS(pclose(r1)));
    printf("pclose w: %d\n", WEXITSTATUS(pclose(w)));
    printf("pclose r2: %d\n", WEXITSTATUS(pclose(r2)));
    system("cat w.txt");

    /* A later child does not hold an earlier stream's pipe among its descriptors. */
    FILE *hold = popen("cat > /dev/null", "w");
    struct stat st;
    fstat(fileno(hold), &st);
    char command[128];
    snprintf(command, sizeof command, "ls -l /proc/$$/fd | grep -c 'pipe:.%lu'", (unsigned long)st.st_ino);
    FILE *look = popen(command, "r");
    printf("the earlier stream's pipe, seen by a later child: %s", fgets(line, sizeof line, look) ? line : "?\n");
    pclose(look);
    pclose(hold);
    unlink("a.txt");
    unlink("b.txt");
    unlink("w.txt");
    return 0;
}
