// podwire-dns-keeper: holds duplicates of podwired's DNS sockets so that a crash of podwired
// (kill -9, an OOM kill) does not close them. While no podwired runs, queries queue in the
// kept UDP socket's receive buffer and TCP connections in the kept listener's backlog, instead
// of getting ICMP port-unreachable / RST; the restarted podwired takes the sockets back
// (SCM_RIGHTS) and answers what queued. A small C program rather than a Node process: it
// must cost next to nothing while it waits (about 1 MB of RSS against ~40 MB for Node).
//
// Protocol: SOCK_SEQPACKET on the abstract unix address "\0<name>" (abstract names are per
// network namespace, so each node namespace has its own keeper). One message per request:
//   "GET"            -> one "FD <key>" message per kept socket, each carrying its fd, then "END"
//   "SET" + fds      -> keep exactly these sockets (replacing all), owned by this connection; "OK"
//   "CLEAR"          -> drop every kept socket if this connection owns them (a graceful stop); "OK"
//   "PING"           -> "OK" (podwired checks at each sync that its keeper still runs)
// <key> is "udp|tcp <address>:<port>", read off the socket itself (getsockname, SO_TYPE).
// Lifetime: without --persistent the keeper exits once no client is connected and it keeps
// nothing. Kept sockets whose owner disconnected (a crash) are dropped after --orphan-ms if no
// client comes back, so an abandoned node does not black-hole DNS forever. With --persistent (a
// DaemonSet's sidecar container) it never exits, and while another keeper holds the name (the
// old pod of a rolling update) it retries the bind every second, to take over when that one goes.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 8
#define MAX_FDS 64
#define MSG_MAX 4096

static int kept[MAX_FDS];
static int nkept = 0;
static int owner = -1;  // client fd that SET the kept sockets (-1: none connected)

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drop_all(void) {
  for (int i = 0; i < nkept; i++) close(kept[i]);
  nkept = 0;
}

static void sock_key(int fd, char* out, size_t n) {
  int type = 0;
  socklen_t tl = sizeof(type);
  getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof(ss);
  memset(&ss, 0, sizeof(ss));
  getsockname(fd, (struct sockaddr*)&ss, &sl);
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss.ss_family == AF_INET) {
    struct sockaddr_in* a = (struct sockaddr_in*)&ss;
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
    port = ntohs(a->sin_port);
    snprintf(out, n, "%s %s:%d", type == SOCK_STREAM ? "tcp" : "udp", host, port);
  } else if (ss.ss_family == AF_INET6) {
    struct sockaddr_in6* a = (struct sockaddr_in6*)&ss;
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
    port = ntohs(a->sin6_port);
    snprintf(out, n, "%s [%s]:%d", type == SOCK_STREAM ? "tcp" : "udp", host, port);
  } else {
    snprintf(out, n, "other");
  }
}

static int send_msg(int c, const char* text, int fd) {
  struct iovec iov = {(void*)text, strlen(text)};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (fd >= 0) {
    memset(&u, 0, sizeof(u));
    m.msg_control = u.buf;
    m.msg_controllen = sizeof(u.buf);
    struct cmsghdr* cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  ssize_t r;
  do r = sendmsg(c, &m, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  return r < 0 ? -1 : 0;
}

// One request from client c. Returns -1 when the client is gone.
static int serve(int c) {
  char buf[MSG_MAX + 1];
  union {
    char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    struct cmsghdr align;
  } u;
  struct iovec iov = {buf, MSG_MAX};
  struct msghdr m;
  memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = u.buf;
  m.msg_controllen = sizeof(u.buf);
  ssize_t n;
  do n = recvmsg(c, &m, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n <= 0) return -1;
  buf[n] = 0;
  int fds[MAX_FDS];
  int nfds = 0;
  for (struct cmsghdr* cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    int k = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < k && nfds < MAX_FDS; i++) memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
  }
  if (strcmp(buf, "GET") == 0) {
    for (int i = 0; i < nfds; i++) close(fds[i]);
    for (int i = 0; i < nkept; i++) {
      char msg[128] = "FD ";
      sock_key(kept[i], msg + 3, sizeof(msg) - 3);
      if (send_msg(c, msg, kept[i]) < 0) return -1;
    }
    return send_msg(c, "END", -1);
  }
  if (strcmp(buf, "SET") == 0) {
    drop_all();
    for (int i = 0; i < nfds; i++) kept[nkept++] = fds[i];
    owner = c;
    return send_msg(c, "OK", -1);
  }
  for (int i = 0; i < nfds; i++) close(fds[i]);
  if (strcmp(buf, "PING") == 0) return send_msg(c, "OK", -1);
  if (strcmp(buf, "CLEAR") == 0) {
    if (owner == c) {
      drop_all();
      owner = -1;
    }
    return send_msg(c, "OK", -1);
  }
  return send_msg(c, "ERR unknown request", -1);
}

int main(int argc, char** argv) {
  const char* name = "podwire-dns-keeper";
  long long orphan_ms = 60000;
  int persistent = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) name = argv[++i];
    else if (strcmp(argv[i], "--orphan-ms") == 0 && i + 1 < argc) orphan_ms = atoll(argv[++i]);
    else if (strcmp(argv[i], "--persistent") == 0) persistent = 1;
    else {
      fprintf(stderr, "usage: podwire-dns-keeper [--name NAME] [--orphan-ms MS] [--persistent]\n");
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  int l = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (l < 0) {
    perror("podwire-dns-keeper: socket");
    return 1;
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  size_t len = strlen(name);
  if (len == 0 || len > sizeof(sa.sun_path) - 1) {
    fprintf(stderr, "podwire-dns-keeper: --name must be 1..%zu bytes\n", sizeof(sa.sun_path) - 1);
    return 2;
  }
  memcpy(sa.sun_path + 1, name, len);
  while (bind(l, (struct sockaddr*)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len)) != 0) {
    if (errno != EADDRINUSE) {
      perror("podwire-dns-keeper: bind");
      return 1;
    }
    // Another keeper already serves this namespace: it keeps. Started by podwired, we leave;
    // as a sidecar we wait to take over when it goes (the old pod of a rolling update).
    if (!persistent) return 0;
    sleep(1);
  }
  if (listen(l, MAX_CLIENTS) != 0) {
    perror("podwire-dns-keeper: listen");
    return 1;
  }
  int clients[MAX_CLIENTS];
  int nclients = 0;
  // A fresh keeper waits this long for its first client before giving up.
  long long alone_since = now_ms();
  for (;;) {
    struct pollfd p[MAX_CLIENTS + 1];
    p[0].fd = l;
    p[0].events = POLLIN;
    for (int i = 0; i < nclients; i++) {
      p[i + 1].fd = clients[i];
      p[i + 1].events = POLLIN;
    }
    int timeout = -1;
    if (nclients == 0) {
      long long limit = nkept > 0 ? orphan_ms : 10000;
      long long left = alone_since + limit - now_ms();
      if (left <= 0) {
        if (nkept > 0) fprintf(stderr, "podwire-dns-keeper: no podwired for %lld ms; releasing %d socket(s)\n", orphan_ms, nkept);
        drop_all();
        if (!persistent) return 0;
        alone_since = now_ms();
        left = 10000;
      }
      timeout = nkept > 0 || !persistent ? (int)left : -1;
    }
    int r = poll(p, (nfds_t)(nclients + 1), timeout);
    if (r < 0 && errno != EINTR) {
      perror("podwire-dns-keeper: poll");
      return 1;
    }
    if (r <= 0) continue;
    for (int i = nclients - 1; i >= 0; i--) {
      if (!(p[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (serve(clients[i]) < 0) {
        if (owner == clients[i]) owner = -1;  // a crash keeps the sockets; a graceful stop CLEARed first
        close(clients[i]);
        clients[i] = clients[--nclients];
      }
    }
    if (p[0].revents & POLLIN) {
      int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
      if (c >= 0) {
        if (nclients < MAX_CLIENTS) clients[nclients++] = c;
        else close(c);
      }
    }
    if (nclients == 0) {
      if (nkept == 0 && !persistent) return 0;
      if (r > 0) alone_since = now_ms();
    }
  }
}
