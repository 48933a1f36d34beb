// A batched UDP server socket for the DNS hot path: recvmmsg a batch of datagrams into
// buffers the JS side owns, call JS once for the whole batch, then sendmmsg the answers
// JS wrote. Node's dgram costs one `message` event (a Buffer, an rinfo object, a libuv
// callback) per query and one send request (a nextTick address lookup, a SendWrap) per
// answer; measured, that per-packet machinery is most of a query's CPU time. Here a
// batch of up to `slots` queries costs one JS call and two system calls. All parsing
// and answering stays in TypeScript (src/dns/udp-native.ts); this file only moves bytes.
//
// udpOpen(host, port, ipv6, rcvbuf) -> fd
//   A non-blocking UDP socket with SO_REUSEADDR + SO_REUSEPORT, bound to host:port.
// udpServe(fd, inBuf, inLens: Int32Array, addrs: Buffer, outBuf, outLens: Int32Array,
//          slotSize, outSlotSize, onBatch(count)) -> handle (an External)
//   Datagram i lands at inBuf[i*slotSize], its length in inLens[i] and its source
//   sockaddr (ADDR_LEN bytes) at addrs[i*ADDR_LEN]. onBatch(count) writes answer i at
//   outBuf[i*outSlotSize] and its length in outLens[i] (0: none). Runs on the event loop
//   (a uv_poll_t), so onBatch runs on the JS thread like any I/O callback.
// udpSendTo(fd, buf, addr: Buffer(ADDR_LEN)) -> bytes sent or -errno   (slow-path answers)
// udpClose(handle)  stops polling and closes the fd.
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <vector>

#include "bound_socket.h"
#include "errors.h"
#include "exports.h"

namespace podwire {
namespace {

constexpr size_t kAddrLen = sizeof(sockaddr_in6);  // 28: room for either family
// Drain at most this many batches per readable event, then let other I/O run.
constexpr int kMaxRounds = 16;

struct UdpServer {
  int fd = -1;
  uv_poll_t poll;
  bool closed = false;
  uint8_t* in = nullptr;
  int32_t* inLens = nullptr;
  uint8_t* addrs = nullptr;
  uint8_t* out = nullptr;
  int32_t* outLens = nullptr;
  size_t slots = 0;
  size_t slotSize = 0;
  size_t outSlotSize = 0;
  std::vector<mmsghdr> rmsgs;
  std::vector<iovec> riov;
  std::vector<mmsghdr> smsgs;
  std::vector<iovec> siov;
  Napi::Reference<Napi::Value> refs[5];
  Napi::FunctionReference onBatch;
  Napi::AsyncContext* ctx = nullptr;
  napi_env env = nullptr;
  size_t sendErrors = 0;
  // Freed when both the poll handle is closed and the JS handle is collected.
  bool uvClosed = false;
  bool finalized = false;
};

void SendBatch(UdpServer* s, int n) {
  size_t k = 0;
  for (int i = 0; i < n; i++) {
    int32_t len = s->outLens[i];
    if (len <= 0 || static_cast<size_t>(len) > s->outSlotSize) continue;
    s->siov[k].iov_base = s->out + static_cast<size_t>(i) * s->outSlotSize;
    s->siov[k].iov_len = static_cast<size_t>(len);
    msghdr& h = s->smsgs[k].msg_hdr;
    std::memset(&h, 0, sizeof(h));
    h.msg_name = s->addrs + static_cast<size_t>(i) * kAddrLen;
    h.msg_namelen = reinterpret_cast<sockaddr*>(h.msg_name)->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    h.msg_iov = &s->siov[k];
    h.msg_iovlen = 1;
    k++;
  }
  size_t done = 0;
  while (done < k) {
    int r = sendmmsg(s->fd, &s->smsgs[done], static_cast<unsigned>(k - done), MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      // EAGAIN (send buffer full) or a per-destination error: skip that datagram, as a
      // lost UDP answer; the client retries.
      s->sendErrors++;
      done++;
      continue;
    }
    done += static_cast<size_t>(r);
  }
}

void OnReadable(uv_poll_t* handle, int status, int events) {
  UdpServer* s = static_cast<UdpServer*>(handle->data);
  if (s->closed || status < 0 || !(events & UV_READABLE)) return;
  Napi::Env env(s->env);
  Napi::HandleScope scope(env);
  for (int round = 0; round < kMaxRounds && !s->closed; round++) {
    for (size_t i = 0; i < s->slots; i++) {
      s->rmsgs[i].msg_hdr.msg_namelen = kAddrLen;
      s->rmsgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(s->fd, s->rmsgs.data(), static_cast<unsigned>(s->slots), MSG_DONTWAIT, nullptr);
    if (n <= 0) break;
    for (int i = 0; i < n; i++) {
      // A datagram larger than the slot is truncated (MSG_TRUNC): mark it so JS drops it.
      s->inLens[i] = (s->rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : static_cast<int32_t>(s->rmsgs[i].msg_len);
      s->outLens[i] = 0;
    }
    try {
      s->onBatch.MakeCallback(env.Global(), {Napi::Number::New(env, n)}, *s->ctx);
    } catch (const Napi::Error&) {
      // The JS side catches its own errors; an escaped one must not take the loop down.
    }
    if (s->closed) break;
    SendBatch(s, n);
    if (static_cast<size_t>(n) < s->slots) break;
  }
}

template <typename T>
T* DataOf(const Napi::Value& v, size_t need, const char* what) {
  if (!v.IsTypedArray()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a typed array");
  Napi::TypedArray t = v.As<Napi::TypedArray>();
  if (t.ByteLength() < need) throw Napi::RangeError::New(v.Env(), std::string(what) + " is too small");
  Napi::ArrayBuffer ab = t.ArrayBuffer();
  return reinterpret_cast<T*>(static_cast<uint8_t*>(ab.Data()) + t.ByteOffset());
}

Napi::Value UdpOpenImpl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string host = info[0].As<Napi::String>().Utf8Value();
  int port = info[1].As<Napi::Number>().Int32Value();
  bool v6 = info[2].As<Napi::Boolean>().Value();
  int rcvbuf = info[3].As<Napi::Number>().Int32Value();
  return Napi::Number::New(env, OpenBoundSocket(env, host, port, v6, SOCK_DGRAM, rcvbuf));
}

void OnUvClosed(uv_handle_t* h) {
  UdpServer* s = static_cast<UdpServer*>(h->data);
  delete s->ctx;  // not in Stop: Stop may run inside a callback made with it
  s->ctx = nullptr;
  close(s->fd);  // only now: libuv must not poll a closed (or reused) fd
  s->uvClosed = true;
  if (s->finalized) delete s;
}

void Stop(UdpServer* s) {
  if (s->closed) return;
  s->closed = true;
  for (auto& r : s->refs) r.Reset();
  s->onBatch.Reset();
  uv_poll_stop(&s->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&s->poll), OnUvClosed);
}

void Finalize(Napi::Env, UdpServer* s) {
  s->finalized = true;
  Stop(s);
  if (s->uvClosed) delete s;
}

}  // namespace

Napi::Value UdpOpen(const Napi::CallbackInfo& info) { return UdpOpenImpl(info); }

Napi::Value UdpServe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UdpServer* s = new UdpServer();
  try {
    s->fd = info[0].As<Napi::Number>().Int32Value();
    s->slotSize = info[6].As<Napi::Number>().Uint32Value();
    s->outSlotSize = info[7].As<Napi::Number>().Uint32Value();
    s->slots = info[2].As<Napi::TypedArray>().ElementLength();
    if (s->slots == 0 || s->slots > 1024 || s->slotSize < 12 || s->outSlotSize < 12) throw Napi::RangeError::New(env, "bad slot geometry");
    s->in = DataOf<uint8_t>(info[1], s->slots * s->slotSize, "inBuf");
    s->inLens = DataOf<int32_t>(info[2], s->slots * 4, "inLens");
    s->addrs = DataOf<uint8_t>(info[3], s->slots * kAddrLen, "addrs");
    s->out = DataOf<uint8_t>(info[4], s->slots * s->outSlotSize, "outBuf");
    s->outLens = DataOf<int32_t>(info[5], s->slots * 4, "outLens");
    if (!info[8].IsFunction()) throw Napi::TypeError::New(env, "onBatch must be a function");
  } catch (...) {
    delete s;
    throw;
  }
  for (int i = 0; i < 5; i++) s->refs[i] = Napi::Persistent(info[i + 1]);
  s->onBatch = Napi::Persistent(info[8].As<Napi::Function>());
  s->ctx = new Napi::AsyncContext(env, "podwire:dns-udp");
  s->env = env;
  s->rmsgs.resize(s->slots);
  s->riov.resize(s->slots);
  s->smsgs.resize(s->slots);
  s->siov.resize(s->slots);
  for (size_t i = 0; i < s->slots; i++) {
    s->riov[i].iov_base = s->in + i * s->slotSize;
    s->riov[i].iov_len = s->slotSize;
    msghdr& h = s->rmsgs[i].msg_hdr;
    std::memset(&h, 0, sizeof(h));
    h.msg_name = s->addrs + i * kAddrLen;
    h.msg_namelen = kAddrLen;
    h.msg_iov = &s->riov[i];
    h.msg_iovlen = 1;
  }
  uv_loop_t* loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  if (uv_poll_init(loop, &s->poll, s->fd) != 0) {
    delete s->ctx;
    delete s;
    throw Napi::Error::New(env, "uv_poll_init failed");
  }
  s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, OnReadable);
  return Napi::External<UdpServer>::New(env, s, Finalize);
}

Napi::Value UdpSendTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  uint8_t* addr = DataOf<uint8_t>(info[2], kAddrLen, "addr");
  socklen_t sl = reinterpret_cast<sockaddr*>(addr)->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  ssize_t r;
  do r = sendto(fd, buf.Data(), buf.Length(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(addr), sl);
  while (r < 0 && errno == EINTR);
  return Napi::Number::New(env, r < 0 ? -errno : static_cast<double>(r));
}

Napi::Value UdpStats(const Napi::CallbackInfo& info) {
  UdpServer* s = info[0].As<Napi::External<UdpServer>>().Data();
  return Napi::Number::New(info.Env(), static_cast<double>(s->sendErrors));
}

Napi::Value UdpClose(const Napi::CallbackInfo& info) {
  Stop(info[0].As<Napi::External<UdpServer>>().Data());
  return info.Env().Undefined();
}

}  // namespace podwire
