// libnftables in-process, inside a network namespace, off the event loop.
//
// run(netnsPath: string | null, script: string, flags: number) -> Promise<{ rc, output, error }>
//   One nft_run_cmd_from_buffer() of `script`: the library parses the whole buffer and
//   sends it as one nfnetlink batch, so a script is one atomic transaction, as `nft -f`.
//   flags: 1 = JSON output (NFT_CTX_OUTPUT_JSON), 2 = dry run (parse and evaluate,
//   commit nothing), 4 = numeric output, 8 = stateless (no counters in listings),
//   16 = as a file: the script goes into a memfd that libnftables reads as
//   /proc/self/fd/N (nft_run_cmd_from_filename, exactly what `nft -f` does), because
//   for buffer input libnftables 1.0.6 reports errors without the line number and
//   quotes the script's first line instead of the offending one. The file name in the
//   error text is replaced by /dev/stdin, so both backends' errors read the same.
//   rc is the library's return code (0 = ok); output and error are its buffered
//   stdout/stderr text ("<cmdline>:3:1-5: Error: ..." on failure).
//
// libnftables opens its netlink socket inside the call, in the namespace of the thread
// that makes it. So the context is created, used and freed on a dedicated thread that
// joined the namespace (RunInNetns, netns_thread.h: the one place the addon calls setns),
// itself started from a libuv pool thread: the event loop never blocks or switches.
// Calls are serialised by one mutex: libnftables keeps some process-wide state (its
// scanner/parser tables and the iproute2 name tables it loads) and its thread safety
// across contexts is not documented.
#include <nftables/libnftables.h>

#include <errno.h>
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <mutex>
#include <string>

#include "errors.h"
#include "netns_thread.h"
#include "promise_worker.h"

namespace podwire {
namespace {

std::mutex g_nft_mutex;

constexpr uint32_t kJson = 1, kDryRun = 2, kNumeric = 4, kStateless = 8, kAsFile = 16;

void ReplaceAll(std::string* s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size())) s->replace(at, from.size(), to);
}

class NftWorker : public PromiseWorker {
 public:
  NftWorker(Napi::Env env, std::string netns, std::string script, uint32_t flags)
      : PromiseWorker(env, "podwire:nftables"), netns_(std::move(netns)), script_(std::move(script)), flags_(flags) {}

 protected:
  SysError Run() override {
    std::lock_guard<std::mutex> lock(g_nft_mutex);
    return RunInNetns(netns_, [this]() { return RunNft(); });
  }

  Napi::Value Result(Napi::Env env) override {
    Napi::Object out = Napi::Object::New(env);
    out.Set("rc", rc_);
    out.Set("output", output_);
    out.Set("error", error_);
    return out;
  }

 private:
  SysError RunNft() {
    nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (ctx == nullptr) return SysError::Of(ENOMEM, "nft_ctx_new");
    unsigned int out = 0;
    if (flags_ & kJson) out |= NFT_CTX_OUTPUT_JSON;
    if (flags_ & kNumeric) out |= NFT_CTX_OUTPUT_NUMERIC_ALL;
    if (flags_ & kStateless) out |= NFT_CTX_OUTPUT_STATELESS;
    nft_ctx_output_set_flags(ctx, out);
    if (flags_ & kDryRun) nft_ctx_set_dry_run(ctx, true);
    // No include paths: a script cannot pull in files (the TS layer refuses `include` too).
    nft_ctx_clear_include_paths(ctx);
    if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
      nft_ctx_free(ctx);
      return SysError::Of(ENOMEM, "nft_ctx_buffer_output");
    }
    std::string fileName;
    int memfd = -1;
    if (flags_ & kAsFile) {
      memfd = memfd_create("podwire-nft", MFD_CLOEXEC);
      if (memfd < 0) {
        int e = errno;
        nft_ctx_free(ctx);
        return SysError::Of(e, "memfd_create");
      }
      for (size_t off = 0; off < script_.size();) {
        ssize_t n = write(memfd, script_.data() + off, script_.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          int e = errno;
          close(memfd);
          nft_ctx_free(ctx);
          return SysError::Of(e, "write memfd");
        }
        off += static_cast<size_t>(n);
      }
      fileName = "/proc/self/fd/" + std::to_string(memfd);
      rc_ = nft_run_cmd_from_filename(ctx, fileName.c_str());
      close(memfd);
    } else {
      rc_ = nft_run_cmd_from_buffer(ctx, script_.c_str());
    }
    const char* o = nft_ctx_get_output_buffer(ctx);
    const char* e = nft_ctx_get_error_buffer(ctx);
    if (o != nullptr) output_ = o;
    if (e != nullptr) error_ = e;
    nft_ctx_free(ctx);
    // libnftables allocates per element while it parses (expressions, GMP numbers) and
    // frees it all at nft_ctx_free, but glibc keeps the freed heap of this thread's arena:
    // a 10k-Service cold start left ~300 MB resident in the daemon. Give it back now.
    malloc_trim(0);
    if (!fileName.empty()) ReplaceAll(&error_, fileName + ":", "/dev/stdin:");
    return SysError();
  }

  std::string netns_, script_;
  uint32_t flags_;
  int rc_ = -1;
  std::string output_, error_;
};

Napi::Value Run(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string netns;
  if (info[0].IsString()) netns = info[0].As<Napi::String>().Utf8Value();
  else if (!info[0].IsNull() && !info[0].IsUndefined()) throw Napi::TypeError::New(env, "netnsPath must be a string or null");
  if (!info[1].IsString()) throw Napi::TypeError::New(env, "script must be a string");
  std::string script = info[1].As<Napi::String>().Utf8Value();
  if (script.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "script must not contain NUL");
  uint32_t flags = info[2].IsNumber() ? info[2].As<Napi::Number>().Uint32Value() : 0;
  auto* worker = new NftWorker(env, netns, std::move(script), flags);
  return worker->Queue();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("run", Napi::Function::New(env, Run, "run"));
  return exports;
}

}  // namespace

NODE_API_MODULE(podwire_nftables, Init)

}  // namespace podwire
