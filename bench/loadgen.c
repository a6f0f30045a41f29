/*
 * loadgen.c - RFC 868 load generator for the trio_timehttp benchmark.
 *
 * Why C: the quantity under test is the *server's* CPU cost per connection
 * (tens of microseconds).  A Python load generator spends more CPU per
 * connection than the servers it measures, so on a 2-core machine it would
 * become the bottleneck and hide the differences.  This program costs a few
 * microseconds per connection and runs pinned to its own core.
 *
 * Usage:
 *   loadgen tcp HOST PORT COUNT CONCURRENCY TIMEOUT_S
 *       Keeps CONCURRENCY non-blocking connections in flight until COUNT
 *       connections have completed.  Each connection reads until it has 4
 *       bytes or the server closes, then closes.  A reply is "ok" when it has
 *       at least 4 bytes and decodes to a time within a day of the local
 *       clock.
 *   loadgen udp HOST PORT COUNT WINDOW TIMEOUT_S
 *       Sends COUNT empty datagrams (the RFC 868 request) with at most WINDOW
 *       unanswered at a time, and counts the 4-byte replies.  When no reply
 *       arrives for 100 ms the outstanding datagrams are written off as lost
 *       and the window is refilled, so a lossy server cannot stall the run.
 *
 * Either mode stops at TIMEOUT_S seconds whatever happened (the bench is
 * bounded).  Output: one JSON object on stdout.  Loopback use only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TIME1970 2208988800UL

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* This process's CPU time (user + system): the harness reports it to show
 * the generator is far from being the bottleneck. */
static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static int reply_ok(const unsigned char *b) {
    /* The reply must be a plausible RFC 868 time: within a day of our clock
     * (modulo 2**32, so it stays right after 2036). */
    uint32_t v = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
    uint32_t mine = (uint32_t)((uint64_t)time(NULL) + TIME1970);
    uint32_t diff = v > mine ? v - mine : mine - v;
    return diff < 86400;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

struct conn {
    int fd;
    int got;
    unsigned char buf[8];
};

static int run_tcp(struct sockaddr_in *addr, long count, int conc, double timeout) {
    int ep = epoll_create1(0);
    if (ep < 0) { perror("epoll_create1"); return 2; }
    /* Indexed by fd: fds are small integers and bounded by RLIMIT_NOFILE. */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    long maxfd = (long)rl.rlim_cur;
    struct conn *conns = calloc((size_t)maxfd, sizeof *conns);
    struct epoll_event *evs = calloc((size_t)conc, sizeof *evs);
    if (!conns || !evs) { fprintf(stderr, "out of memory\n"); return 2; }

    long started = 0, done = 0, ok = 0, bad = 0, errors = 0, inflight = 0;
    long err_connect = 0, err_reset = 0, err_short = 0;
    double t0 = now_s(), deadline = t0 + timeout, last_done = t0;
    int timed_out = 0;

    for (;;) {
        /* Top up the window of connections in flight. */
        while (inflight < conc && started < count) {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) { perror("socket"); errors++; err_connect++; started++; done++; continue; }
            if (fd >= maxfd) { close(fd); fprintf(stderr, "fd out of range\n"); return 2; }
            started++;
            int r = connect(fd, (struct sockaddr *)addr, sizeof *addr);
            if (r < 0 && errno != EINPROGRESS) {
                close(fd); errors++; err_connect++; done++;
                continue;
            }
            conns[fd].fd = fd;
            conns[fd].got = 0;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            inflight++;
        }
        if (done >= count) break;
        double t = now_s(), left = deadline - t;
        /* Give up at the deadline, or after 5 s without progress (a dead server). */
        if (left <= 0 || t - last_done > 5.0) { timed_out = 1; break; }
        int n = epoll_wait(ep, evs, conc, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); break; }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            struct conn *c = &conns[fd];
            int finished = 0, failed = 0;
            for (;;) {
                ssize_t k = read(fd, c->buf + c->got, sizeof c->buf - (size_t)c->got);
                if (k > 0) {
                    c->got += (int)k;
                    if (c->got >= 4) { finished = 1; break; }
                } else if (k == 0) {
                    finished = 1; break;
                } else if (errno == EAGAIN) {
                    break;
                } else {
                    failed = 1; break;
                }
            }
            if (!finished && !failed && (evs[i].events & (EPOLLERR | EPOLLHUP))) failed = 1;
            if (!finished && !failed) continue;
            close(fd); /* close() also removes it from the epoll set */
            inflight--; done++;
            last_done = now_s();
            if (failed) {
                errors++;
                if (c->got == 0) err_connect++; else err_reset++;
            } else if (c->got < 4) {
                errors++; err_short++;
            } else if (reply_ok(c->buf)) {
                ok++;
            } else {
                bad++;
            }
        }
    }
    double elapsed = now_s() - t0;
    printf("{\"mode\": \"tcp\", \"count\": %ld, \"concurrency\": %d, \"done\": %ld, \"ok\": %ld, "
           "\"bad\": %ld, \"errors\": %ld, \"err_connect\": %ld, \"err_reset\": %ld, "
           "\"err_short\": %ld, \"timed_out\": %s, \"elapsed\": %.6f, \"cpu\": %.6f}\n",
           count, conc, done, ok, bad, errors, err_connect, err_reset, err_short,
           timed_out ? "true" : "false", elapsed, cpu_s());
    return 0;
}

static int run_udp(struct sockaddr_in *addr, long count, int window, double timeout) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { perror("socket"); return 2; }
    int big = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    /* connect(): the kernel then delivers only the server's replies. */
    if (connect(fd, (struct sockaddr *)addr, sizeof *addr) < 0) { perror("connect"); return 2; }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

    long sent = 0, replies = 0, ok = 0, bad = 0, lost = 0, send_errors = 0, outstanding = 0;
    double t0 = now_s(), deadline = t0 + timeout, last_reply = t0;
    int timed_out = 0;
    unsigned char buf[64];
    while (sent < count || outstanding > 0) {
        while (outstanding < window && sent < count) {
            if (send(fd, "", 0, 0) < 0) {
                send_errors++;
                if (errno == ECONNREFUSED) break;
            } else {
                outstanding++;
            }
            sent++;
        }
        double t = now_s();
        /* Give up at the deadline, or after 2 s without a single reply (a dead server). */
        if (t > deadline || t - last_reply > 2.0) { timed_out = 1; break; }
        ssize_t k = recv(fd, buf, sizeof buf, 0);
        if (k < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                lost += outstanding; /* nothing for 100 ms: write the window off */
                outstanding = 0;
                continue;
            }
            if (errno == EINTR) continue;
            send_errors++; /* e.g. ECONNREFUSED reported through recv */
            lost += outstanding;
            outstanding = 0;
            continue;
        }
        replies++;
        last_reply = now_s();
        if (outstanding > 0) outstanding--;
        if (k >= 4 && reply_ok(buf)) ok++; else bad++;
    }
    double elapsed = now_s() - t0;
    printf("{\"mode\": \"udp\", \"count\": %ld, \"window\": %d, \"sent\": %ld, \"replies\": %ld, "
           "\"ok\": %ld, \"bad\": %ld, \"lost\": %ld, \"errors\": %ld, \"timed_out\": %s, "
           "\"elapsed\": %.6f, \"cpu\": %.6f}\n",
           count, window, sent, replies, ok, bad, lost, send_errors,
           timed_out ? "true" : "false", elapsed, cpu_s());
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s tcp|udp HOST PORT COUNT CONCURRENCY|WINDOW TIMEOUT_S\n", argv[0]);
        return 2;
    }
    raise_nofile();
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[3]));
    if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address: %s\n", argv[2]);
        return 2;
    }
    long count = atol(argv[4]);
    int conc = atoi(argv[5]);
    double timeout = atof(argv[6]);
    if (count <= 0 || conc <= 0 || timeout <= 0) { fprintf(stderr, "bad numbers\n"); return 2; }
    if (strcmp(argv[1], "tcp") == 0) return run_tcp(&addr, count, conc, timeout);
    if (strcmp(argv[1], "udp") == 0) return run_udp(&addr, count, conc, timeout);
    fprintf(stderr, "mode must be tcp or udp\n");
    return 2;
}
