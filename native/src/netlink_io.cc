// Blocking netlink I/O, run on libuv pool threads (never the event loop). The socket
// was created in its namespace already, so these threads need no namespace switch.
//
// netlinkBatch(fd, packed: Buffer, datagrams: Uint32Array, datagramCount, firstSeq,
//              messageCount, timeoutMs, ackEach) -> Promise<{ errnos: Int32Array, errors: {index, message}[] }>
//   `packed` holds NLMSG_ALIGN-padded messages with seq = firstSeq + index (packed by
//   src/kernel/netlink/batch-pack.ts); datagrams[2*d] is the byte end and
//   datagrams[2*d+1] the message end of datagram d. Each datagram is sent, then its ACKs
//   are drained before the next is sent, so the receive queue holds at most one
//   datagram's ACKs.
//   ackEach = true: every message carries NLM_F_ACK and is answered individually.
//   ackEach = false: only each datagram's last message carries NLM_F_ACK. The kernel
//   answers every failed message regardless of the flag, and it processes a datagram
//   in order, so once the last message's ACK is in, every message of the datagram
//   without an error answer succeeded. Same result, one ACK per datagram.
//
// netlinkRequest(fd, message: Buffer, seq, timeoutMs)
//   -> Promise<{ data: Buffer, offsets: Uint32Array, errno, extack, dumpInterrupted }>
//   Replies until NLMSG_DONE or the ACK; errno > 0 when the kernel refused.
#include <errno.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include "exports.h"
#include "promise_worker.h"

#ifndef NLM_F_CAPPED
#define NLM_F_CAPPED 0x100
#endif
#ifndef NLM_F_ACK_TLVS
#define NLM_F_ACK_TLVS 0x200
#endif
#ifndef NLMSGERR_ATTR_MSG
#define NLMSGERR_ATTR_MSG 1
#define NLMSGERR_ATTR_OFFS 2
#endif

namespace podwire {
namespace {

constexpr int32_t kPending = INT32_MIN;

// Extended-ACK TLVs after an nlmsgerr/NLMSG_DONE body: returns NLMSGERR_ATTR_MSG text,
// with the offending attribute's offset appended when the kernel names one.
std::string ParseExtAck(const uint8_t* tlv, size_t len) {
  std::string text;
  long offs = -1;
  while (len >= sizeof(nlattr)) {
    const nlattr* a = reinterpret_cast<const nlattr*>(tlv);
    if (a->nla_len < sizeof(nlattr) || a->nla_len > len) break;
    const uint8_t* value = tlv + NLA_HDRLEN;
    size_t vlen = a->nla_len - NLA_HDRLEN;
    int type = a->nla_type & NLA_TYPE_MASK;
    if (type == NLMSGERR_ATTR_MSG) text.assign(reinterpret_cast<const char*>(value), strnlen(reinterpret_cast<const char*>(value), vlen));
    else if (type == NLMSGERR_ATTR_OFFS && vlen >= 4) { uint32_t o; memcpy(&o, value, 4); offs = o; }
    size_t step = NLA_ALIGN(a->nla_len);
    if (step > len) break;
    tlv += step;
    len -= step;
  }
  if (!text.empty() && offs >= 0) text += " (attribute at byte " + std::to_string(offs) + ")";
  return text;
}

// Decodes an NLMSG_ERROR: positive errno (0 = ACK) and the ext-ack text, if any.
int32_t ParseError(const nlmsghdr* h, std::string* text) {
  size_t payload = h->nlmsg_len - NLMSG_HDRLEN;
  if (payload < sizeof(int)) return EPROTO;
  const nlmsgerr* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
  int32_t err = -e->error;
  if (text != nullptr && (h->nlmsg_flags & NLM_F_ACK_TLVS) && payload >= sizeof(nlmsgerr)) {
    // Capped: only the request's header was echoed; otherwise the whole request was.
    size_t off = (h->nlmsg_flags & NLM_F_CAPPED) ? sizeof(nlmsgerr) : NLMSG_ALIGN(sizeof(int) + e->msg.nlmsg_len);
    if (off < payload) *text = ParseExtAck(static_cast<const uint8_t*>(NLMSG_DATA(h)) + off, payload - off);
  }
  return err;
}

int WaitReadable(int fd, int timeoutMs) {
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int r = poll(&p, 1, timeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    return r == 0 ? ETIMEDOUT : 0;
  }
}

class BatchWorker : public PromiseWorker {
 public:
  BatchWorker(Napi::Env env, int fd, Napi::Buffer<uint8_t> packed, std::vector<uint32_t> datagrams,
              uint32_t firstSeq, uint32_t count, int timeoutMs, bool ackEach)
      : PromiseWorker(env, "podwire:netlinkBatch"),
        fd_(fd), packedRef_(Napi::Persistent(packed)), data_(packed.Data()), size_(packed.Length()),
        datagrams_(std::move(datagrams)), firstSeq_(firstSeq), count_(count), timeoutMs_(timeoutMs), ackEach_(ackEach) {}

 protected:
  SysError Run() override {
    errnos_.assign(count_, kPending);
    slots_.resize(kSlots * kSlotSize);
    uint32_t byteStart = 0, msgStart = 0;
    for (size_t d = 0; d + 1 < datagrams_.size(); d += 2) {
      uint32_t byteEnd = datagrams_[d], msgEnd = datagrams_[d + 1];
      if (byteEnd > size_ || byteEnd < byteStart || msgEnd > count_ || msgEnd < msgStart)
        return SysError::Of(EINVAL, "netlinkBatch datagram table");
      sockaddr_nl kernel{};
      kernel.nl_family = AF_NETLINK;
      ssize_t n;
      do {
        n = sendto(fd_, data_ + byteStart, byteEnd - byteStart, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
      } while (n < 0 && errno == EINTR);
      if (n < 0) Fill(msgStart, msgEnd, errno);  // the kernel saw none of it
      else Drain(msgStart, msgEnd);
      byteStart = byteEnd;
      msgStart = msgEnd;
    }
    Fill(0, count_, EPROTO);  // anything never answered (should not happen)
    return SysError();
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Int32Array errnos = Napi::Int32Array::New(env, count_);
    if (count_ > 0) memcpy(errnos.Data(), errnos_.data(), count_ * sizeof(int32_t));
    Napi::Array errors = Napi::Array::New(env, texts_.size());
    for (size_t i = 0; i < texts_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("index", texts_[i].first);
      o.Set("message", texts_[i].second);
      errors.Set(static_cast<uint32_t>(i), o);
    }
    Napi::Object out = Napi::Object::New(env);
    out.Set("errnos", errnos);
    out.Set("errors", errors);
    return out;
  }

 private:
  static constexpr unsigned kSlots = 64;
  static constexpr size_t kSlotSize = 8192;

  void Fill(uint32_t lo, uint32_t hi, int err) {
    for (uint32_t i = lo; i < hi; i++)
      if (errnos_[i] == kPending) errnos_[i] = err;
  }

  // Receives ACKs until every message in [lo, hi) is answered. The kernel processes a
  // datagram synchronously inside sendto(), so once an overrun (ENOBUFS) is seen, what
  // is queued now is all that will ever arrive: the rest get ENOBUFS ("outcome unknown").
  void Drain(uint32_t lo, uint32_t hi) {
    if (hi == lo) return;
    // ackEach: wait for every message's answer; otherwise only for the last message's.
    uint32_t pending = ackEach_ ? hi - lo : 1;
    bool overrun = false;
    mmsghdr hdrs[kSlots];
    iovec iov[kSlots];
    bool wait = false;  // the kernel answered during sendto(): try reading before polling
    while (pending > 0) {
      if (wait && !overrun) {
        int w = WaitReadable(fd_, timeoutMs_);
        if (w != 0) return Fill(lo, hi, w);
      }
      wait = false;
      for (unsigned i = 0; i < kSlots; i++) {
        iov[i] = {slots_.data() + i * kSlotSize, kSlotSize};
        memset(&hdrs[i], 0, sizeof(hdrs[i]));
        hdrs[i].msg_hdr.msg_iov = &iov[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
      }
      int got = recvmmsg(fd_, hdrs, kSlots, MSG_DONTWAIT, nullptr);
      if (got < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          if (overrun) break;
          wait = true;
          continue;
        }
        if (errno == ENOBUFS) {
          overrun = true;
          continue;
        }
        return Fill(lo, hi, errno);
      }
      for (int i = 0; i < got; i++) {
        unsigned len = hdrs[i].msg_len;
        const nlmsghdr* h = reinterpret_cast<const nlmsghdr*>(slots_.data() + i * kSlotSize);
        for (; NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
          if (h->nlmsg_type == NLMSG_ERROR) pending -= Record(h, lo, hi, true);
        }
        // An answer longer than the slot arrives truncated (MSG_TRUNC): its header and
        // errno are intact, only the ext-ack text is lost.
        if ((hdrs[i].msg_hdr.msg_flags & MSG_TRUNC) && len >= NLMSG_HDRLEN + sizeof(int) && h->nlmsg_type == NLMSG_ERROR)
          pending -= Record(h, lo, hi, false);
      }
    }
    if (pending == 0 && !ackEach_ && !overrun) return Fill(lo, hi, 0);  // no error answer = success
    Fill(lo, hi, ENOBUFS);
  }

  // Stores one NLMSG_ERROR's result; returns 1 if it settles something Drain waits for.
  uint32_t Record(const nlmsghdr* h, uint32_t lo, uint32_t hi, bool complete) {
    uint32_t index = h->nlmsg_seq - firstSeq_;
    if (index >= count_ || errnos_[index] != kPending) return 0;  // stale or duplicate
    std::string text;
    int32_t err;
    if (complete) {
      err = ParseError(h, &text);
    } else {
      int raw;
      memcpy(&raw, NLMSG_DATA(h), sizeof(raw));
      err = -raw;
    }
    errnos_[index] = err;
    if (err != 0 && !text.empty()) texts_.emplace_back(index, std::move(text));
    return (ackEach_ ? (index >= lo && index < hi) : index == hi - 1) ? 1 : 0;
  }

  int fd_;
  Napi::Reference<Napi::Buffer<uint8_t>> packedRef_;  // keeps `data_` alive while we run
  const uint8_t* data_;
  size_t size_;
  std::vector<uint32_t> datagrams_;
  uint32_t firstSeq_, count_;
  int timeoutMs_;
  bool ackEach_;
  std::vector<int32_t> errnos_;
  std::vector<std::pair<uint32_t, std::string>> texts_;
  std::vector<uint8_t> slots_;
};

class RequestWorker : public PromiseWorker {
 public:
  RequestWorker(Napi::Env env, int fd, Napi::Buffer<uint8_t> message, uint32_t seq, int timeoutMs)
      : PromiseWorker(env, "podwire:netlinkRequest"),
        fd_(fd), messageRef_(Napi::Persistent(message)), message_(message.Data()), size_(message.Length()),
        seq_(seq), timeoutMs_(timeoutMs) {}

 protected:
  SysError Run() override {
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t n;
    do {
      n = sendto(fd_, message_, size_, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel));
    } while (n < 0 && errno == EINTR);
    if (n < 0) return SysError::Of(errno, "sendto");
    std::vector<uint8_t> buf(65536);
    offsets_.push_back(0);
    for (;;) {
      int w = WaitReadable(fd_, timeoutMs_);
      if (w != 0) return SysError::Of(w, "poll");
      // Peek the datagram size first so a large dump chunk is never truncated.
      ssize_t size = recv(fd_, nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
      if (size < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return SysError::Of(errno, "recv");
      }
      if (static_cast<size_t>(size) > buf.size()) buf.resize(size);
      ssize_t got = recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return SysError::Of(errno, "recv");
      }
      unsigned len = static_cast<unsigned>(got);
      for (const nlmsghdr* h = reinterpret_cast<const nlmsghdr*>(buf.data()); NLMSG_OK(h, len); h = NLMSG_NEXT(h, len)) {
        if (h->nlmsg_seq != seq_) continue;  // a late answer to an earlier, abandoned call
        if (h->nlmsg_type == NLMSG_ERROR) {
          errno_ = ParseError(h, &extack_);
          return SysError();
        }
        if (h->nlmsg_type == NLMSG_DONE) {
          size_t payload = h->nlmsg_len - NLMSG_HDRLEN;
          if (payload >= sizeof(int)) {
            int status;
            memcpy(&status, NLMSG_DATA(h), sizeof(int));
            if (status < 0) errno_ = -status;
            if ((h->nlmsg_flags & NLM_F_ACK_TLVS) && payload > sizeof(int))
              extack_ = ParseExtAck(static_cast<const uint8_t*>(NLMSG_DATA(h)) + sizeof(int), payload - sizeof(int));
          }
          return SysError();
        }
        if (h->nlmsg_type == NLMSG_NOOP) continue;
        if (h->nlmsg_flags & NLM_F_DUMP_INTR) dumpInterrupted_ = true;
        const uint8_t* p = reinterpret_cast<const uint8_t*>(h);
        data_.insert(data_.end(), p, p + h->nlmsg_len);
        offsets_.push_back(static_cast<uint32_t>(data_.size()));
      }
    }
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("data", Napi::Buffer<uint8_t>::Copy(env, data_.data(), data_.size()));
    Napi::Uint32Array offsets = Napi::Uint32Array::New(env, offsets_.size());
    memcpy(offsets.Data(), offsets_.data(), offsets_.size() * sizeof(uint32_t));
    out.Set("offsets", offsets);
    out.Set("errno", errno_);
    out.Set("extack", extack_);
    out.Set("dumpInterrupted", dumpInterrupted_);
    return out;
  }

 private:
  int fd_;
  Napi::Reference<Napi::Buffer<uint8_t>> messageRef_;
  const uint8_t* message_;
  size_t size_;
  uint32_t seq_;
  int timeoutMs_;
  std::vector<uint8_t> data_;
  std::vector<uint32_t> offsets_;
  int32_t errno_ = 0;
  std::string extack_;
  bool dumpInterrupted_ = false;
};

}  // namespace

Napi::Value NetlinkBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 7 || !info[1].IsBuffer() || !info[2].IsTypedArray())
    throw Napi::TypeError::New(env, "netlinkBatch(fd, packed, datagrams, datagramCount, firstSeq, count, timeoutMs)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> packed = info[1].As<Napi::Buffer<uint8_t>>();
  Napi::Uint32Array table = info[2].As<Napi::Uint32Array>();
  uint32_t datagramCount = info[3].As<Napi::Number>().Uint32Value();
  if (static_cast<size_t>(datagramCount) * 2 > table.ElementLength())
    throw Napi::RangeError::New(env, "datagramCount exceeds the datagram table");
  std::vector<uint32_t> datagrams(table.Data(), table.Data() + datagramCount * 2);
  uint32_t firstSeq = info[4].As<Napi::Number>().Uint32Value();
  uint32_t count = info[5].As<Napi::Number>().Uint32Value();
  int timeoutMs = info[6].As<Napi::Number>().Int32Value();
  bool ackEach = info.Length() < 8 || info[7].ToBoolean().Value();
  auto* worker = new BatchWorker(env, fd, packed, std::move(datagrams), firstSeq, count, timeoutMs, ackEach);
  return worker->Queue();
}

Napi::Value NetlinkRequest(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 4 || !info[1].IsBuffer())
    throw Napi::TypeError::New(env, "netlinkRequest(fd, message, seq, timeoutMs)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Buffer<uint8_t> message = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t seq = info[2].As<Napi::Number>().Uint32Value();
  int timeoutMs = info[3].As<Napi::Number>().Int32Value();
  auto* worker = new RequestWorker(env, fd, message, seq, timeoutMs);
  return worker->Queue();
}

}  // namespace podwire
