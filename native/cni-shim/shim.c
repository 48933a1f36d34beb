/*
 * podwire-cni: the CNI plugin executable the container runtime runs for every pod.
 *
 * Fast path: forward the CNI_* environment and stdin to podwired over its control
 * unix socket (HTTP/1.1 POST /v1/cni, framing in src/cni-plugin/fastpath/protocol.ts),
 * print the body the daemon answers on stdout and exit with X-CNI-Exit-Code.
 * The daemon does the work with warm netlink sockets, so a CNI call costs one small
 * process, not a Node start (~49 ms on this machine class).
 *
 * Fallback: when nothing listens on the socket (absent, ECONNREFUSED), execv node on
 * dist/src/cni-plugin/main.js: the same TypeScript code, in-process, same IPAM store
 * and lock. Stdin has not been read at that point, so it passes through untouched.
 *
 * If the daemon accepted the connection but died before answering, the shim does NOT
 * rerun the command in-process (the daemon may have done half of it): it answers CNI
 * error 11 "try again later"; the runtime's DEL/GC cleans up.
 *
 * The socket: PODWIRE_CONTROL_SOCKET, else `control_socket=` of podwire.conf beside this
 * executable (podwired writes it when it installs the binary; no runtime sets our env),
 * else /run/podwire/podwire.sock. Falling back although a daemon was configured is
 * never silent: the in-process path records it (src/cni-plugin/fallback.ts).
 *
 * Environment: PODWIRE_CONTROL_SOCKET (overrides podwire.conf),
 * PODWIRE_CNI_INPROCESS=1 (skip the daemon), PODWIRE_NODE (node binary; default: the
 * node that built the shim, then `node` on PATH), PODWIRE_CNI_JS (main.js; default:
 * resolved from the shim's real path, see docs/cni.md).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef PODWIRE_NODE_DEFAULT
#define PODWIRE_NODE_DEFAULT "/usr/bin/node"
#endif
#ifndef PODWIRE_PKG_ROOT
#define PODWIRE_PKG_ROOT ""
#endif
#define DEFAULT_SOCKET "/run/podwire/podwire.sock"
#define MAIN_JS_REL "dist/src/cni-plugin/main.js"
#define RESPONSE_TIMEOUT_S 300

extern char **environ;

struct buf {
  char *data;
  size_t len, cap;
};

static void buf_put(struct buf *b, const void *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n + 1) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) {
      fputs("podwire-cni: out of memory\n", stderr);
      exit(1);
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = 0;
}

static int read_all(int fd, struct buf *b) {
  char tmp[65536];
  for (;;) {
    ssize_t n = read(fd, tmp, sizeof tmp);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf_put(b, tmp, (size_t)n);
  }
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* cniVersion of the request, for our own error JSON; "1.1.0" when not found. */
static void request_version(const struct buf *in, char *out, size_t outlen) {
  snprintf(out, outlen, "1.1.0");
  if (!in || !in->data) return;
  const char *k = strstr(in->data, "\"cniVersion\"");
  if (!k) return;
  k = strchr(k + 12, '"');
  if (!k) return;
  const char *e = strchr(k + 1, '"');
  if (!e || (size_t)(e - k - 1) >= outlen || e - k - 1 > 16) return;
  memcpy(out, k + 1, (size_t)(e - k - 1));
  out[e - k - 1] = 0;
}

/* `in` is the request (NULL when stdin was never read); msg may hold operator-given paths. */
static int cni_error(const struct buf *in, int code, const char *msg) {
  char v[32];
  request_version(in, v, sizeof v);
  printf("{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"podwire-cni: ", v, code);
  for (const unsigned char *c = (const unsigned char *)msg; *c; c++) {
    if (*c == '"' || *c == '\\') printf("\\%c", *c);
    else if (*c < 0x20) printf("\\u%04x", *c);
    else putchar(*c);
  }
  printf("\"}\n");
  fflush(stdout);
  return 1;
}

static int readable(const char *path) { return access(path, R_OK) == 0; }

/* main.js: env, else relative to the shim's real location, else the build-time package root. */
static int find_main_js(char *out, size_t outlen) {
  const char *env = getenv("PODWIRE_CNI_JS");
  if (env && *env) {
    snprintf(out, outlen, "%s", env);
    return readable(out) ? 0 : -1;
  }
  char self[PATH_MAX];
  if (realpath("/proc/self/exe", self)) {
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    /* <root>/native/cni-shim/build/Release/podwire-cni-shim, or <root>/bin/podwire-cni-shim */
    const char *ups[] = {"/../../../..", "/.."};
    for (size_t i = 0; i < sizeof ups / sizeof ups[0]; i++) {
      snprintf(out, outlen, "%s%s/%s", self, ups[i], MAIN_JS_REL);
      if (readable(out)) return 0;
    }
  }
  if (PODWIRE_PKG_ROOT[0]) {
    snprintf(out, outlen, "%s/%s", PODWIRE_PKG_ROOT, MAIN_JS_REL);
    if (readable(out)) return 0;
  }
  return -1;
}

/*
 * Neither the daemon nor the in-process path is available (a node with no Node.js or no
 * package, while podwired restarts): CNI code 11, "try again later", so the runtime retries
 * instead of failing the pod for good.
 */
static int unavailable(const struct buf *buffered, const char *socket_path, const char *why) {
  struct buf request = {0};
  if (!buffered && read_all(0, &request) == 0) buffered = &request; /* for the request's cniVersion */
  char msg[PATH_MAX + 256];
  snprintf(msg, sizeof msg, "podwired is not answering on %s and the in-process fallback is unavailable (%s); retry once podwired runs",
           socket_path ? socket_path : "(skipped)", why);
  return cni_error(buffered, 11, msg);
}

/* Runs the in-process path; `buffered` is stdin we already consumed (NULL: untouched). */
static int fallback(const struct buf *buffered, const char *socket_path) {
  char js[PATH_MAX];
  if (find_main_js(js, sizeof js) != 0) return unavailable(buffered, socket_path, "no readable dist/src/cni-plugin/main.js; set PODWIRE_CNI_JS");
  if (buffered) {
    int mfd = memfd_create("podwire-cni-stdin", 0);
    if (mfd < 0 || write_all(mfd, buffered->data ? buffered->data : "", buffered->len) != 0 || lseek(mfd, 0, SEEK_SET) != 0 ||
        dup2(mfd, 0) < 0)
      return cni_error(buffered, 5, "cannot re-feed stdin to the in-process path");
    close(mfd);
  }
  const char *node = getenv("PODWIRE_NODE");
  if (!node || !*node) node = PODWIRE_NODE_DEFAULT;
  setenv("PODWIRE_CNI_MAIN", "1", 1);
  char *argv[] = {(char *)node, js, NULL};
  execv(node, argv);
  argv[0] = "node";
  execvp("node", argv);
  return unavailable(buffered, socket_path, "cannot execute node; set PODWIRE_NODE");
}

/*
 * `control_socket=PATH` from podwire.conf in the directory of argv[0] (the path the runtime
 * exec'd, which is where podwired wrote the file), else of /proc/self/exe. Bounded: reads at
 * most 4 KiB; a value too long for `sock` is ignored. Exports PODWIRE_CNI_CONF (the file read)
 * for the in-process path. Returns 1 when `sock` was filled.
 */
static int conf_socket(const char *argv0, char *sock, size_t socklen) {
  char dirs[2][PATH_MAX];
  int ndirs = 0;
  if (argv0 && strchr(argv0, '/') && strlen(argv0) < PATH_MAX) snprintf(dirs[ndirs++], PATH_MAX, "%s", argv0);
  ssize_t n = readlink("/proc/self/exe", dirs[ndirs], PATH_MAX - 1);
  if (n > 0) dirs[ndirs++][n] = 0;
  for (int i = 0; i < ndirs; i++) {
    char *slash = strrchr(dirs[i], '/');
    if (!slash) continue;
    *slash = 0;
    char conf[PATH_MAX];
    if (snprintf(conf, sizeof conf, "%s/podwire.conf", dirs[i]) >= (int)sizeof conf) continue;
    int fd = open(conf, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char text[4097];
    size_t len = 0;
    while (len < sizeof text - 1) {
      ssize_t r = read(fd, text + len, sizeof text - 1 - len);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      len += (size_t)r;
    }
    close(fd);
    text[len] = 0;
    setenv("PODWIRE_CNI_CONF", conf, 1);
    int found = 0;
    for (char *line = text, *next; line && *line; line = next) {
      next = strchr(line, '\n');
      if (next) *next++ = 0;
      size_t l = strlen(line);
      while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) line[--l] = 0;
      if (strncmp(line, "control_socket=/", 16) == 0 && l - 15 < socklen) {
        memcpy(sock, line + 15, l - 15 + 1);
        found = 1;
      }
    }
    return found;
  }
  return 0;
}

/* A daemon was configured but did not answer: the in-process path records it (fallback.ts). */
static void note_fallback(const char *socket_path, int err) {
  setenv("PODWIRE_CNI_FALLBACK", socket_path, 1);
  setenv("PODWIRE_CNI_FALLBACK_REASON", strerror(err), 1);
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *inproc = getenv("PODWIRE_CNI_INPROCESS");
  if (inproc && *inproc && strcmp(inproc, "0") != 0) return fallback(NULL, NULL);

  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  char conf_sock[sizeof addr.sun_path];
  int have_conf = conf_socket(argc > 0 ? argv[0] : NULL, conf_sock, sizeof conf_sock);
  const char *path = getenv("PODWIRE_CONTROL_SOCKET");
  if (!path || !*path) path = have_conf ? conf_sock : DEFAULT_SOCKET;
  if (strlen(path) >= sizeof addr.sun_path) return fallback(NULL, path);
  strcpy(addr.sun_path, path);
  int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
    note_fallback(path, errno);
    if (s >= 0) close(s);
    return fallback(NULL, path); /* no daemon: stdin is untouched */
  }
  struct timeval tv = {.tv_sec = RESPONSE_TIMEOUT_S};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  struct buf in = {0};
  if (read_all(0, &in) != 0) return cni_error(&in, 5, "cannot read stdin");

  struct buf body = {0};
  for (char **e = environ; *e; e++) {
    if (strncmp(*e, "CNI_", 4) == 0) buf_put(&body, *e, strlen(*e) + 1);
  }
  buf_put(&body, "", 1);
  if (in.len) buf_put(&body, in.data, in.len);

  char head[256];
  int hl = snprintf(head, sizeof head,
                    "POST /v1/cni HTTP/1.1\r\nHost: podwire\r\nContent-Type: application/x-podwire-cni\r\n"
                    "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                    body.len);
  /* Head and body in one writev: the daemon sees the whole request in one read. */
  struct iovec iov[2] = {{head, (size_t)hl}, {body.data, body.len}};
  size_t total = (size_t)hl + body.len, sent = 0;
  while (sent < total) {
    ssize_t w = writev(s, iov, 2);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return cni_error(&in, 11, "podwired closed the connection before taking the request; try again later");
    sent += (size_t)w;
    for (int i = 0; i < 2; i++) { /* advance past what was written */
      size_t d = (size_t)w < iov[i].iov_len ? (size_t)w : iov[i].iov_len;
      iov[i].iov_base = (char *)iov[i].iov_base + d;
      iov[i].iov_len -= d;
      w -= (ssize_t)d;
    }
  }

  /* Read until the head and Content-Length bytes of body are in (no wait for the close). */
  struct buf resp = {0};
  char *end = NULL;
  long want = -1;
  for (;;) {
    char tmp[65536];
    ssize_t n = read(s, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf_put(&resp, tmp, (size_t)n);
    if (!end) {
      end = strstr(resp.data, "\r\n\r\n");
      if (end) {
        want = -1;
        for (char *l = strstr(resp.data, "\r\n"); l && l < end; l = strstr(l + 2, "\r\n"))
          if (strncasecmp(l + 2, "Content-Length:", 15) == 0) want = atol(l + 17);
      }
    }
    if (end && want >= 0 && resp.len >= (size_t)(end + 4 - resp.data) + (size_t)want) break;
  }
  close(s);
  if (resp.len == 0) return cni_error(&in, 11, "podwired did not answer (daemon gone or timed out); try again later");

  end = strstr(resp.data, "\r\n\r\n");
  int status = 0;
  if (!end || sscanf(resp.data, "HTTP/1.%*d %d", &status) != 1) return cni_error(&in, 11, "malformed answer from podwired; try again later");
  *end = 0;
  char *payload = end + 4;
  size_t plen = resp.len - (size_t)(payload - resp.data);
  int exit_code = -1;
  long clen = -1;
  for (char *line = strstr(resp.data, "\r\n"); line && line < end; line = strstr(line + 2, "\r\n")) {
    char *h = line + 2;
    if (strncasecmp(h, "X-CNI-Exit-Code:", 16) == 0) exit_code = atoi(h + 16);
    else if (strncasecmp(h, "Content-Length:", 15) == 0) clen = atol(h + 15);
  }
  if (clen >= 0 && (size_t)clen < plen) plen = (size_t)clen;
  if (status != 200 || exit_code < 0) {
    char msg[200];
    snprintf(msg, sizeof msg, "podwired answered HTTP %d without a CNI result; try again later", status);
    return cni_error(&in, 11, msg);
  }
  if (write_all(1, payload, plen) != 0) return 1;
  return exit_code;
}
