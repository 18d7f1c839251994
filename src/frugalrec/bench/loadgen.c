/* Open-loop HTTP/1.1 load generator for frugalrec's load test (the compiled engine).
 *
 * Why C: at a few thousand requests per second a Python generator on one core sends its
 * requests 100+ ms after their scheduled time, and since every latency is timed from the
 * scheduled send, the client's own lateness was being charged to the server. This program
 * keeps the schedule to within tens of microseconds on one core and does nothing else:
 * Python (frugalrec.bench.loadtest) builds the requests, this sends them at their due
 * times over a pool of keep-alive connections, and Python reads the answers back.
 *
 * Input (binary, little-endian), one record per request, in due order:
 *   uint32 flags (bit 0: send it again right after its answer, as a client retrying),
 *   uint64 due_ns (offset from the start), uint32 len, then len bytes of the raw request.
 * Output (text), one line per answer:
 *   index attempt status latency_us send_late_us server_total_ms
 * latency is from the scheduled send (attempt 0) or from the retry's send (attempt 1);
 * status 0 is a transport error or a timeout; server_total_ms is the body's first
 * "total_ms" number, or -1.
 * A summary line goes to stderr as JSON.
 *
 * usage: loadgen HOST PORT REQUESTS_FILE OUT_FILE [MAX_CONNS] [PREOPEN] [TIMEOUT_MS]
 *
 * Plain C99 + Linux epoll/timerfd; built with -O2 and no CPU-specific flags.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    uint32_t flags;
    uint64_t due;
    uint32_t len;
    char *bytes;
} req_t;

enum { C_FREE, C_CONNECTING, C_IDLE, C_BUSY };

typedef struct {
    int fd, state, reused;
    long idx;           /* request in flight */
    int attempt;
    uint64_t due;       /* latency origin of the request in flight */
    uint32_t off;       /* bytes of the request written */
    char *in;
    size_t in_len, in_cap;
} conn_t;

static req_t *reqs;
static long nreq;
static conn_t *conns;
static int max_conns, nconns;
static int *idle, nidle;
static long *pending, pend_head, pend_tail;
static int ep;
static struct sockaddr_in addr;
static uint64_t t0;
static FILE *out;
static long answers, errors_, reconnects, done_needed, done_count;
static uint64_t timeout_ns;
static uint64_t *late_all;
static double *sent_late_us; /* per request: due -> first byte written (attempt 0) */
static long nlate;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static int open_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - conns)};
    if (epoll_ctl(ep, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void finish(conn_t *c, int status, uint64_t now);

static void start_write(conn_t *c, uint64_t now) {
    req_t *r = &reqs[c->idx];
    while (c->off < r->len) {
        ssize_t w = write(c->fd, r->bytes + c->off, r->len - c->off);
        if (w < 0) {
            if (errno == EAGAIN) {
                watch(c, EPOLLOUT | EPOLLIN, EPOLL_CTL_MOD);
                return;
            }
            finish(c, -1, now);
            return;
        }
        c->off += (uint32_t)w;
    }
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
}

/* Put request idx (attempt) on connection slot c, fresh or idle. */
static void assign(conn_t *c, long idx, int attempt, uint64_t due, uint64_t now) {
    c->idx = idx;
    c->attempt = attempt;
    c->due = due;
    c->off = 0;
    c->in_len = 0;
    if (attempt == 0) sent_late_us[idx] = now > due ? (double)(now - due) / 1e3 : 0.0;
    if (c->state == C_CONNECTING) return; /* written once connected */
    c->state = C_BUSY;
    start_write(c, now);
}

static conn_t *new_slot(void) {
    for (int i = 0; i < max_conns; i++)
        if (conns[i].state == C_FREE) return &conns[i];
    return NULL;
}

static int connect_slot(conn_t *c, uint64_t now) {
    (void)now;
    int fd = open_conn();
    if (fd < 0) return -1;
    c->fd = fd;
    c->state = C_CONNECTING;
    c->reused = 0;
    nconns++;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
    return 0;
}

static void dispatch(long idx, int attempt, uint64_t due, uint64_t now) {
    if (attempt == 0 && nlate < nreq) late_all[nlate++] = now > due ? now - due : 0;
    if (nidle > 0) {
        assign(&conns[idle[--nidle]], idx, attempt, due, now);
        return;
    }
    conn_t *c = nconns < max_conns ? new_slot() : NULL;
    if (c && connect_slot(c, now) == 0) {
        assign(c, idx, attempt, due, now);
        return;
    }
    /* All connections busy: the request waits, and the wait counts (open loop). */
    pending[pend_tail++] = idx * 2 + attempt;
}

static void release(conn_t *c, uint64_t now) {
    if (pend_head < pend_tail) {
        long p = pending[pend_head++];
        long idx = p / 2;
        int attempt = (int)(p % 2);
        uint64_t due = attempt ? now : reqs[idx].due + t0;
        c->state = C_IDLE;
        assign(c, idx, attempt, due, now);
        return;
    }
    c->state = C_IDLE;
    idle[nidle++] = (int)(c - conns);
}

static void close_slot(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = C_FREE;
    nconns--;
}

/* A slot closed while requests wait for a connection: open one for the oldest. */
static void drain_pending(uint64_t now) {
    while (pend_head < pend_tail && nconns < max_conns) {
        conn_t *c = new_slot();
        if (!c || connect_slot(c, now) != 0) return;
        long p = pending[pend_head++];
        long idx = p / 2;
        int attempt = (int)(p % 2);
        assign(c, idx, attempt, attempt ? now : reqs[idx].due + t0, now);
    }
}

static double body_total_ms(const char *body, size_t n) {
    static const char key[] = "\"total_ms\":";
    const char *p = memmem(body, n, key, sizeof key - 1);
    if (!p) return -1.0;
    return strtod(p + sizeof key - 1, NULL);
}

/* status -1: transport failure before a complete answer. */
static void finish(conn_t *c, int status, uint64_t now) {
    long idx = c->idx;
    int attempt = c->attempt;
    if (status < 0) {
        if (c->reused && c->in_len == 0 && attempt >= 0) {
            /* The server closed an idle keep-alive connection before reading the request:
               nothing was processed; resend on a new connection, as HTTP clients do. */
            reconnects++;
            close_slot(c);
            if (connect_slot(c, now) == 0) {
                c->idx = idx; c->attempt = attempt; c->off = 0; c->in_len = 0;
                return;
            }
        } else {
            close_slot(c);
        }
        status = 0;
    }
    double total = -1.0;
    int keep = status > 0;
    if (status > 0) {
        char *hdr_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
        size_t hlen = (size_t)(hdr_end - c->in) + 4;
        total = body_total_ms(c->in + hlen, c->in_len - hlen);
        char *conn_hdr = memmem(c->in, hlen, "onnection: close", 16);
        if (conn_hdr) keep = 0;
    }
    fprintf(out, "%ld %d %d %.1f %.1f %.3f\n", idx, attempt, status,
            (double)(now - c->due) / 1e3, attempt ? 0.0 : sent_late_us[idx], total);
    answers++;
    if (status == 0) errors_++;
    done_count++;
    if (status > 0 && !keep) close_slot(c);
    if (attempt == 0 && (reqs[idx].flags & 1)) {
        /* The retry: the same bytes again right after the first answer, whatever it was. */
        if (c->state == C_BUSY && keep) {
            c->reused = 1;
            assign(c, idx, 1, now, now);
        } else {
            dispatch(idx, 1, now, now);
        }
        return;
    }
    if (c->state == C_BUSY) {
        c->reused = 1;
        release(c, now);
    }
    drain_pending(now);
}

/* A complete answer in c->in? Returns status or 0 when more bytes are needed. */
static int parse(conn_t *c) {
    char *hdr_end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!hdr_end) return 0;
    size_t hlen = (size_t)(hdr_end - c->in) + 4;
    long clen = 0;
    for (char *p = c->in; p < hdr_end; p++) {
        if ((*p == '\n') && strncasecmp(p + 1, "content-length:", 15) == 0) {
            clen = strtol(p + 16, NULL, 10);
            break;
        }
    }
    if (c->in_len < hlen + (size_t)clen) return 0;
    int status = (int)strtol(c->in + 9, NULL, 10);
    return status > 0 ? status : 599;
}

static void on_readable(conn_t *c, uint64_t now) {
    for (;;) {
        if (c->in_cap - c->in_len < 65536) {
            c->in_cap = c->in_cap ? c->in_cap * 2 : 131072;
            c->in = realloc(c->in, c->in_cap);
            if (!c->in) die("realloc");
        }
        ssize_t r = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
        if (r == 0) {
            finish(c, -1, now);
            return;
        }
        if (r < 0) {
            if (errno == EAGAIN) break;
            finish(c, -1, now);
            return;
        }
        c->in_len += (size_t)r;
    }
    int status = parse(c);
    if (status) finish(c, status, now);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT REQUESTS OUT [MAX_CONNS] [PREOPEN] [TIMEOUT_MS]\n",
                argv[0]);
        return 2;
    }
    max_conns = argc > 5 ? atoi(argv[5]) : 1024;
    int preopen = argc > 6 ? atoi(argv[6]) : 64;
    timeout_ns = (uint64_t)(argc > 7 ? atol(argv[7]) : 10000) * 1000000ull;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("inet_pton");

    FILE *f = fopen(argv[3], "rb");
    if (!f) die(argv[3]);
    long cap = 1024;
    reqs = malloc(sizeof(req_t) * (size_t)cap);
    for (;;) {
        uint32_t flags, len;
        uint64_t due;
        if (fread(&flags, 4, 1, f) != 1) break;
        if (fread(&due, 8, 1, f) != 1 || fread(&len, 4, 1, f) != 1) die("short record");
        if (nreq == cap) reqs = realloc(reqs, sizeof(req_t) * (size_t)(cap *= 2));
        reqs[nreq].flags = flags;
        reqs[nreq].due = due;
        reqs[nreq].len = len;
        reqs[nreq].bytes = malloc(len);
        if (fread(reqs[nreq].bytes, 1, len, f) != len) die("short request");
        done_needed += 1 + (flags & 1);
        nreq++;
    }
    fclose(f);
    out = fopen(argv[4], "w");
    if (!out) die(argv[4]);
    setvbuf(out, NULL, _IOFBF, 1 << 20);

    conns = calloc((size_t)max_conns, sizeof(conn_t));
    idle = malloc(sizeof(int) * (size_t)max_conns);
    pending = malloc(sizeof(long) * (size_t)(2 * nreq + 1));
    late_all = malloc(sizeof(uint64_t) * (size_t)(nreq + 1));
    sent_late_us = calloc((size_t)(nreq + 1), sizeof(double));
    ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (tfd < 0) die("timerfd_create");
    struct epoll_event tev = {.events = EPOLLIN, .data.u32 = 0xffffffffu};
    epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev);

    /* A warm pool, as a long-running client has; connected before the clock starts. */
    for (int i = 0; i < preopen && i < max_conns; i++) {
        conn_t *c = &conns[i];
        c->fd = open_conn();
        if (c->fd < 0) die("connect");
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        if (poll(&pfd, 1, 5000) <= 0) die("connect timeout");
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            errno = err;
            die("connect");
        }
        c->state = C_IDLE;
        c->reused = 0;
        nconns++;
        watch(c, EPOLLIN, EPOLL_CTL_ADD);
        idle[nidle++] = i;
    }

    t0 = now_ns() + 20000000ull; /* start 20 ms from now */
    long next = 0;
    uint64_t last_sweep = 0;
    struct epoll_event evs[512];
    while (done_count < done_needed) {
        uint64_t now = now_ns();
        while (next < nreq && reqs[next].due + t0 <= now) {
            dispatch(next, 0, reqs[next].due + t0, now);
            next++;
            now = now_ns();
        }
        int wait_ms = 100;
        if (next < nreq) {
            uint64_t at = reqs[next].due + t0;
            struct itimerspec its = {{0, 0}, {(time_t)(at / 1000000000ull),
                                              (long)(at % 1000000000ull)}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, evs, 512, wait_ms);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        now = now_ns();
        for (int i = 0; i < n; i++) {
            uint32_t k = evs[i].data.u32;
            if (k == 0xffffffffu) {
                uint64_t x;
                while (read(tfd, &x, sizeof x) > 0) {}
                continue;
            }
            conn_t *c = &conns[k];
            if (c->state == C_FREE) continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && c->state != C_BUSY &&
                c->state != C_CONNECTING) {
                close_slot(c); /* an idle connection the server dropped */
                for (int j = 0; j < nidle; j++)
                    if (idle[j] == (int)k) { idle[j] = idle[--nidle]; break; }
                continue;
            }
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t el = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
                if (err) {
                    finish(c, -1, now);
                    continue;
                }
                c->state = C_BUSY;
                start_write(c, now);
                continue;
            }
            if (c->state == C_IDLE) {
                /* readable while idle: the server closed it; drop it */
                char b;
                if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) <= 0) {
                    close_slot(c);
                    for (int j = 0; j < nidle; j++)
                        if (idle[j] == (int)k) { idle[j] = idle[--nidle]; break; }
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT && c->off < reqs[c->idx].len) start_write(c, now);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP) && c->state == C_BUSY)
                on_readable(c, now);
        }
        if (now - last_sweep > 100000000ull) {
            last_sweep = now;
            for (int i = 0; i < max_conns; i++) {
                conn_t *c = &conns[i];
                if ((c->state == C_BUSY || c->state == C_CONNECTING) &&
                    now - c->due > timeout_ns) {
                    c->reused = 0;
                    c->in_len = 1; /* not a stale keep-alive: count as an error */
                    finish(c, -1, now);
                }
            }
        }
    }
    fclose(out);
    qsort(late_all, (size_t)nlate, sizeof(uint64_t), cmp_u64);
    double late_p50 = nlate ? late_all[nlate / 2] / 1e6 : 0;
    double late_p99 = nlate ? late_all[(long)(nlate * 0.99)] / 1e6 : 0;
    double late_max = nlate ? late_all[nlate - 1] / 1e6 : 0;
    double wall = (now_ns() - t0) / 1e9;
    fprintf(stderr,
            "{\"requests\": %ld, \"answers\": %ld, \"transport_errors\": %ld, "
            "\"reconnects\": %ld, \"wall_s\": %.3f, \"send_late_p50_ms\": %.3f, "
            "\"send_late_p99_ms\": %.3f, \"send_late_max_ms\": %.3f, \"max_pending\": %ld}\n",
            nreq, answers, errors_, reconnects, wall, late_p50, late_p99, late_max,
            pend_tail);
    return 0;
}
