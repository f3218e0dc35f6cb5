/* Unix datagram sockets named by path: every call that names a peer (sendto, sendmsg,
 * sendmmsg) or reports a sender (recvfrom, recvmsg, recvmmsg), printed so that the shim's
 * output can be compared with a real chroot's. Batches larger than the shim's own are sent
 * and received in a loop, as the calls' contract asks of every caller, and by one blocking
 * call each, which must do them all. A sender's address
 * asked into a buffer too small for it must not be written past. argv[1] is a scratch
 * directory for the sockets. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MANY 20

static struct sockaddr_un addr_of(const char *path) {
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    return a;
}

static int bound(const char *path) {
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a = addr_of(path);
    unlink(path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror(path);
        return -1;
    }
    return fd;
}

static void show(const char *what, const char *data, ssize_t n, struct sockaddr_un *from,
                 socklen_t len) {
    printf("%s: %.*s from %s (len %u)\n", what, (int)(n < 0 ? 0 : n), data,
           len > sizeof(sa_family_t) ? from->sun_path : "(unnamed)", (unsigned)len);
}

int main(int argc, char **argv) {
    char srv_path[108], cli_path[108];
    if (argc < 2) return 2;
    snprintf(srv_path, sizeof srv_path, "%s/probe-dgram-srv.sock", argv[1]);
    snprintf(cli_path, sizeof cli_path, "%s/probe-dgram-cli.sock", argv[1]);
    setvbuf(stdout, NULL, _IONBF, 0);
    int srv = bound(srv_path), cli = bound(cli_path);
    if (srv < 0 || cli < 0) return 1;
    struct sockaddr_un to_srv = addr_of(srv_path), from;
    socklen_t len;
    char buf[64];
    ssize_t n;

    sendto(cli, "sendto", 6, 0, (struct sockaddr *)&to_srv, sizeof to_srv);
    len = sizeof from;
    n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    show("recvfrom", buf, n, &from, len);

    /* A sender's address into 8 bytes: the kernel reports its full length, nothing is
     * written past the 8. */
    struct { struct sockaddr_un small; } guard;
    memset(&guard, 0x5a, sizeof guard);
    sendto(cli, "small", 5, 0, (struct sockaddr *)&to_srv, sizeof to_srv);
    len = 8;
    n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&guard.small, &len);
    int intact = 1;
    for (size_t i = 8; i < sizeof guard; i++)
        intact &= ((unsigned char *)&guard)[i] == 0x5a;
    printf("recvfrom into 8 bytes: %.*s, family %d, beyond untouched %d, length reported %s\n",
           (int)n, buf, guard.small.sun_family, intact, len > 8 ? "larger" : "within");

    struct iovec iov = {.iov_base = "sendmsg", .iov_len = 7};
    struct msghdr msg = {.msg_name = &to_srv, .msg_namelen = sizeof to_srv, .msg_iov = &iov,
                         .msg_iovlen = 1};
    sendmsg(cli, &msg, 0);
    struct iovec in = {.iov_base = buf, .iov_len = sizeof buf};
    struct msghdr got = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = &in,
                         .msg_iovlen = 1};
    n = recvmsg(srv, &got, 0);
    show("recvmsg", buf, n, &from, got.msg_namelen);

    /* MANY messages at once each way, looping over partial batches. */
    struct mmsghdr out[MANY], back[MANY];
    struct iovec out_iov[MANY], back_iov[MANY];
    char texts[MANY][16], bufs[MANY][16];
    struct sockaddr_un senders[MANY];
    memset(out, 0, sizeof out);
    memset(back, 0, sizeof back);
    for (int i = 0; i < MANY; i++) {
        snprintf(texts[i], sizeof texts[i], "batch %d", i);
        out_iov[i] = (struct iovec){.iov_base = texts[i], .iov_len = strlen(texts[i])};
        out[i].msg_hdr = (struct msghdr){.msg_name = &to_srv, .msg_namelen = sizeof to_srv,
                                         .msg_iov = &out_iov[i], .msg_iovlen = 1};
        back_iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = sizeof bufs[i]};
        back[i].msg_hdr = (struct msghdr){.msg_name = &senders[i],
                                          .msg_namelen = sizeof senders[i],
                                          .msg_iov = &back_iov[i], .msg_iovlen = 1};
    }
    /* The receiver's queue holds fewer than MANY (net.unix.max_dgram_qlen): take what
     * arrived whenever the sender would block. */
    int sent = 0, received = 0;
    while (received < MANY) {
        if (sent < MANY) {
            int k = sendmmsg(cli, out + sent, MANY - sent, MSG_DONTWAIT);
            if (k > 0) sent += k;
            else if (errno != EAGAIN) { perror("sendmmsg"); return 1; }
        }
        int k = recvmmsg(srv, back + received, MANY - received, MSG_DONTWAIT, NULL);
        if (k > 0) received += k;
        else if (errno != EAGAIN) { perror("recvmmsg"); return 1; }
    }
    printf("sendmmsg/recvmmsg: %d sent, %d received\n", sent, received);
    for (int i = 0; i < MANY; i++)
        show("  recvmmsg", bufs[i], back[i].msg_len, &senders[i], back[i].msg_hdr.msg_namelen);

    /* One blocking call each way does all MANY, as one kernel call would, although the
     * receiver's queue is shorter: a child takes them as they come. */
    for (int i = 0; i < MANY; i++) {
        back[i].msg_hdr.msg_namelen = sizeof senders[i];
        back[i].msg_len = 0;
    }
    pid_t child = fork();
    if (child == 0) {
        int k = recvmmsg(srv, back, MANY, 0, NULL);
        printf("one recvmmsg: %d, the last %.*s from %s\n", k, (int)back[MANY - 1].msg_len,
               bufs[MANY - 1], senders[MANY - 1].sun_path);
        _exit(0);
    }
    int all = sendmmsg(cli, out, MANY, 0);
    int status = 0;
    waitpid(child, &status, 0);
    printf("one sendmmsg: %d, the last %u bytes\n", all, out[MANY - 1].msg_len);

    struct sockaddr_un peer;
    connect(cli, (struct sockaddr *)&to_srv, sizeof to_srv);
    len = sizeof peer;
    getpeername(cli, (struct sockaddr *)&peer, &len);
    printf("getpeername: %s\n", peer.sun_path);
    send(cli, "connected", 9, 0);
    len = sizeof from;
    n = recvfrom(srv, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
    show("recvfrom connected", buf, n, &from, len);
    unlink(srv_path);
    unlink(cli_path);
    puts("done");
    return 0;
}
