// The native socket path: the server's hot request (lib/server/socket-path.ts) read, batched,
// predicted and answered in C++ on a duplicate of the connection's file descriptor, polled on
// node's event loop, with no JS per request.
//
// Why: at one row per request the server's throughput is set by its per-request CPU, and on
// node:net even a server that writes a constant answer spends most of it in node's streams and
// the JS around them (bench/serve.mjs's node:net ceiling). Here a connection costs one read and
// one write per turn of the loop, as a plain epoll server's does.
//
// Scope: connections are adopted when they open (the socket paused, so node never reads it).
// Each turn of the loop, every readable connection is read once; if what arrived is whole
// requests of the hot form (core/serve/http_head.h, json_rows.h) for models this path serves,
// they join their model's batch (admitted as lib/server/batcher.ts admits them: past
// maxQueueRows, a 503), and at the loop's check phase each batch is one predict call and each
// connection gets its answers in one write. Anything else (another request, a request cut
// across reads, an end of stream with something owed, a write that does not finish, a disposed
// model, close()) hands the connection back to the TypeScript direct path, with the bytes not
// yet answered and the answers not yet written, and it stays there. So every case but the
// common one keeps exactly the behaviour it had. (A client that leaves with nothing owed is
// only closed: JS gets those in lists, at most 64 per turn.)
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/predictor.h"

namespace mlpkit::addon {

struct SocketPathModel {
  std::string name;
  std::shared_ptr<Predictor> model;
  // Most rows in one predict call (a fuller batch runs at once, and the rest makes the next).
  std::size_t chunk_rows = 256;
  // The body of the 503 a request gets past maxQueueRows (the TypeScript path's words).
  std::string overloaded_body;
};

struct SocketPathConfig {
  std::vector<SocketPathModel> models;
  // The end of an answer's head after Date: the Connection and Keep-Alive fields and the blank line.
  std::string tail;
  // The Retry-After value of a 503.
  std::string retry_after;
  std::size_t max_body_bytes = 1 << 20;
  std::size_t max_queue_rows = 1024;
  std::size_t max_pipelined = 64;
  double headers_timeout_ms = 10000;
  double keep_alive_ms = 6000;
  double check_every_ms = 1000;
  // The shared body budget, [bytes held, limit] (lib/server/body.ts), and the buffer that holds it alive.
  Napi::Reference<Napi::Float64Array> budget;
  std::vector<double> latency_buckets;
  std::vector<double> batch_buckets;
  Napi::FunctionReference on_release;
  // onEnded(ids: Float64Array): connections whose clients left with nothing owed; JS closes them.
  Napi::FunctionReference on_ended;
};

class Engine;

// The JS object (lib/server/socket-path.ts): adopt(id, fd), forget(id), takeStats(), close().
class SocketPathWrap final : public Napi::ObjectWrap<SocketPathWrap> {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  // new SocketPath(External<SocketPathConfig>): made by the addon's createSocketPath, which
  // checks the options and resolves the models.
  explicit SocketPathWrap(const Napi::CallbackInfo& info);
  ~SocketPathWrap() override;

 private:
  Napi::Value Adopt(const Napi::CallbackInfo& info);
  Napi::Value Forget(const Napi::CallbackInfo& info);
  Napi::Value TakeStats(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  std::shared_ptr<Engine> engine_;
};

// createSocketPath(options): checks the options, resolves each model with `resolve` (which
// throws for anything but a live model of this addon), and makes the SocketPath object.
Napi::Value CreateSocketPath(const Napi::CallbackInfo& info, const std::function<std::shared_ptr<Predictor>(const Napi::Value&)>& resolve,
                             const Napi::FunctionReference& socket_path_class);

// The parsers and the encoder on their own, for the tests that check them against the
// TypeScript path's (serveParseHead, serveReadRows, serveAnswer, serveHttpDate).
Napi::Value ServeParseHead(const Napi::CallbackInfo& info);
Napi::Value ServeReadRows(const Napi::CallbackInfo& info);
Napi::Value ServeAnswer(const Napi::CallbackInfo& info);
Napi::Value ServeHttpDate(const Napi::CallbackInfo& info);

}  // namespace mlpkit::addon
