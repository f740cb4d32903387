#include "addon/socket_path.h"

#include <cerrno>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <ctime>
#include <functional>
#include <unordered_map>
#include <utility>

#ifndef _WIN32
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#endif

#include "addon/checks.h"
#include "addon/errors.h"
#include "core/serve/answer.h"
#include "core/serve/http_head.h"
#include "core/serve/js_number.h"
#include "core/serve/json_rows.h"

// MLPKIT_SOCKET_PATH: built with libuv's header (see CMakeLists.txt), on a system with file
// descriptors. Without it SocketPath cannot be made and the server keeps to its TypeScript path.
#if defined(MLPKIT_SOCKET_PATH) && !defined(_WIN32)
#include <uv.h>
#define MLPKIT_HAS_SOCKET_PATH 1
#endif

namespace mlpkit::addon {
#ifdef MLPKIT_HAS_SOCKET_PATH
namespace {

// node:http's default maxHeaderSize, as lib/server/direct-http.ts's MAX_HEAD_BYTES.
constexpr std::size_t kMaxHeadBytes = 16 * 1024;
// One read per connection per turn; a request that does not fit is left to the TypeScript path.
constexpr std::size_t kReadBytes = 64 * 1024;
constexpr std::size_t kNone = static_cast<std::size_t>(-1);
// Connections that ended with nothing owed are given to JS to close at most this many per turn
// of the loop: 1024 clients leaving at once would otherwise hold the loop ~25 ms in one turn,
// and the requests of the connections still open with it.
constexpr std::size_t kEndedPerTurn = 64;
// No SIGPIPE from a send to a closed connection (node ignores the signal anyway; macOS has no
// such flag and relies on that).
#ifdef MSG_NOSIGNAL
constexpr int kSendFlags = MSG_NOSIGNAL;
#else
constexpr int kSendFlags = 0;
#endif

// Observations as lib/server/metrics.ts's Histogram keeps them: a count per bucket (not
// cumulative; the last is +Inf) and the sum. Taken by TypeScript and added to its own.
struct Histogram {
  std::vector<double> counts;
  double sum = 0;
  double count = 0;

  // `times` observations of v.
  void observe(const std::vector<double>& bounds, double v, double times = 1) {
    std::size_t i = 0;
    while (i < bounds.size() && v > bounds[i]) ++i;
    counts[i] += times;
    sum += v * times;
    count += times;
  }
  void append_to(std::vector<double>& out) {
    out.push_back(sum);
    out.push_back(count);
    out.insert(out.end(), counts.begin(), counts.end());
    sum = count = 0;
    std::fill(counts.begin(), counts.end(), 0.0);
  }
};

}  // namespace

struct Conn;

// One request waiting in its model's batch.
struct Part {
  Conn* conn;
  std::size_t rows;  // 0 when refused
  bool flat;
  // Refused for a full queue: answered 503 in its turn, as the TypeScript batcher refuses it.
  bool overloaded;
  // Its bytes in conn->in (head and body).
  std::size_t bytes;
};

struct Served {
  std::weak_ptr<Predictor> model;
  std::size_t inputs = 0, outputs = 0, chunk_rows = 0;
  std::vector<float> x, y;
  std::vector<Part> parts;
  std::size_t rows = 0;
  // This turn's admission, as lib/server/batcher.ts's: the turn's first request runs at once;
  // the others wait in the queue, up to maxQueueRows rows, and past that get 503.
  bool burst = false;
  std::size_t queued_requests = 0, queued_rows = 0;
  std::string overloaded_body;
  double answered = 0, refused = 0;
  Histogram latency, batch_rows, batch_requests;
};

struct Conn {
  uv_poll_t poll;  // poll.data: this
  Engine* engine = nullptr;
  double id = 0;
  int fd = -1;
  // This turn's requests; those before in_done are answered (in `out`).
  std::string in;
  std::size_t in_done = 0;
  std::string out;
  std::size_t queued = 0;    // requests in a batch
  std::size_t answered = 0;  // requests answered, not yet written
  std::size_t refused = 0;   // of them, 503s
  std::size_t model = kNone;  // the model of this turn's requests
  std::uint64_t read_at = 0;  // uv_hrtime of this turn's first read
  std::uint64_t active_at = 0;
  bool served = false;   // some answer was written (else the header timeout applies)
  bool in_turn = false;  // listed in Engine::turn_
  bool released = false;
};

class Engine {
 public:
  Engine(Napi::Env env, SocketPathConfig&& config);
  ~Engine();
  void Start(const std::shared_ptr<Engine>& self);
  bool Adopt(double id, int fd);
  Napi::Value TakeStats(Napi::Env env);
  // Hands every connection back (to JS when call_js) and closes the handles; idempotent.
  void Close(bool call_js);
  // The socket was closed on the JS side: the connection is dropped, nothing is called.
  void Forget(double id);

 private:
  static void OnReadable(uv_poll_t* handle, int status, int events);
  static void OnCheck(uv_check_t* handle);
  static void OnTimer(uv_timer_t* handle);
  static void OnIdle(uv_idle_t* handle);
  // Gives up to `limit` ended connections to JS (onEnded), and stops the idle handle when none are left.
  void HandOverEnded(std::size_t limit);
  void Sweep();
  static void OnConnClosed(uv_handle_t* handle);
  static void OnOwnClosed(uv_handle_t* handle);
  static void OnCleanup(napi_async_cleanup_hook_handle hook, void* arg);

  void Read(Conn* c);
  bool TakeRequests(Conn* c, std::size_t from);
  void RunBatch(Served& s);
  void Flush();
  void Release(Conn* c, const char* reason, bool call_js = true);
  // Counts the answers of this turn that are written, or are about to be handed over unwritten.
  void CountAnswers(Conn* c, std::uint64_t now);
  void HandleClosed();
  // The check phase of this turn runs Flush.
  void ArmCheck();
  const std::string& Date();

  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  SocketPathConfig config_;
  const double* budget_ = nullptr;  // [bytes held, limit]
  std::vector<Served> served_;
  std::vector<std::string> names_;
  std::unordered_map<double, Conn*> conns_;
  std::vector<Conn*> turn_;  // connections with answers to write at the check phase
  struct Request {
    std::size_t rows;
    bool flat;
    std::size_t bytes;
  };
  std::vector<Request> requests_;  // scratch of TakeRequests
  std::vector<float> rows_;        // scratch of TakeRequests
  std::vector<char> read_buf_;
  uv_check_t check_{};
  uv_timer_t timer_{};
  uv_idle_t idle_{};  // active while ended_ holds connections: the loop turns without waiting
  bool check_active_ = false;
  std::vector<double> ended_;  // connections that ended with nothing owed, for JS to close
  std::size_t ended_at_ = 0;
  std::string date_;
  std::time_t date_second_ = -1;
  int open_handles_ = 0;
  bool closed_ = false;
  napi_async_cleanup_hook_handle hook_ = nullptr;
  std::shared_ptr<Engine> self_;  // held while any handle is open
};

Engine::Engine(Napi::Env env, SocketPathConfig&& config) : env_(env), config_(std::move(config)) {
  budget_ = config_.budget.Value().Data();
  for (SocketPathModel& m : config_.models) {
    Served s;
    s.inputs = m.model->inputs();
    s.outputs = m.model->outputs();
    s.chunk_rows = m.chunk_rows;
    s.overloaded_body = m.overloaded_body;
    s.model = m.model;
    s.latency.counts.assign(config_.latency_buckets.size() + 1, 0.0);
    s.batch_rows.counts.assign(config_.batch_buckets.size() + 1, 0.0);
    s.batch_requests.counts.assign(config_.batch_buckets.size() + 1, 0.0);
    names_.push_back(m.name);
    served_.push_back(std::move(s));
  }
  // Only weak references are kept: a model disposed while served makes its requests go to the
  // TypeScript path, which answers them as it answers a disposed model's.
  for (SocketPathModel& m : config_.models) m.model.reset();
  read_buf_.resize(kReadBytes);
}

Engine::~Engine() {
  if (hook_ != nullptr) napi_remove_async_cleanup_hook(hook_);
}

void Engine::Start(const std::shared_ptr<Engine>& self) {
  if (napi_get_uv_event_loop(env_, &loop_) != napi_ok) throw Napi::Error::New(Napi::Env(env_), "createSocketPath: no event loop");
  self_ = self;
  uv_check_init(loop_, &check_);
  check_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&check_));
  uv_timer_init(loop_, &timer_);
  timer_.data = this;
  const auto every = static_cast<std::uint64_t>(config_.check_every_ms);
  uv_timer_start(&timer_, OnTimer, every, every);
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_));
  uv_idle_init(loop_, &idle_);
  idle_.data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(&idle_));
  open_handles_ = 3;
  // A worker thread's loop must have no open handles when it ends: the hook closes them.
  napi_add_async_cleanup_hook(env_, OnCleanup, this, &hook_);
}

bool Engine::Adopt(double id, int fd) {
  if (closed_ || fd < 0 || conns_.count(id) != 0) return false;
  // A private descriptor of the same socket: its number cannot be reused by another connection
  // while it is polled here, whatever JS does with node's (a destroy() there closes only node's,
  // and forget() then drops this one).
  const int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return false;
  auto* c = new Conn();
  if (uv_poll_init(loop_, &c->poll, own) != 0) {
    ::close(own);
    delete c;
    return false;
  }
  c->poll.data = c;
  c->engine = this;
  c->id = id;
  c->fd = own;
  c->active_at = uv_hrtime();
  ++open_handles_;
  if (uv_poll_start(&c->poll, UV_READABLE, OnReadable) != 0) {
    c->released = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), OnConnClosed);
    return false;
  }
  conns_.emplace(id, c);
  return true;
}

// The libuv callbacks: nothing may throw out of them (std::terminate). An exception here can
// only be an allocation failing; the connections it touches go back to the TypeScript path.
void Engine::OnReadable(uv_poll_t* handle, int status, int /*events*/) {
  auto* c = static_cast<Conn*>(handle->data);
  try {
    if (status < 0) return c->engine->Release(c, "error");
    c->engine->Read(c);
  } catch (...) {
    c->engine->Release(c, "error");
  }
}

void Engine::Read(Conn* c) {
  ssize_t n;
  do {
    n = ::read(c->fd, read_buf_.data(), read_buf_.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    return Release(c, "error");
  }
  // The end of the stream (node's own read sees it again once the socket is back in JS).
  if (n == 0) return Release(c, "end");
  const std::uint64_t now = uv_hrtime();
  c->active_at = now;
  const std::size_t from = c->in.size();
  if (from == 0) c->read_at = now;
  c->in.append(read_buf_.data(), static_cast<std::size_t>(n));
  if (!TakeRequests(c, from)) return Release(c, "request");
  if (!c->in_turn) {
    c->in_turn = true;
    turn_.push_back(c);
  }
}

bool Engine::TakeRequests(Conn* c, std::size_t from) {
  const auto* b = reinterpret_cast<const unsigned char*>(c->in.data());
  const std::size_t n = c->in.size();
  requests_.clear();
  rows_.clear();
  std::size_t model = c->model;
  const std::size_t waiting = c->queued + c->answered;  // owed answers, as the TypeScript path's queue
  std::size_t pos = from;
  while (pos < n) {
    if (requests_.size() + waiting >= config_.max_pipelined) return false;
    // The blank line that ends the head, within the head size limit.
    const std::size_t limit = std::min(n, pos + kMaxHeadBytes + 4);
    std::size_t end = kNone;
    for (std::size_t i = pos; i + 3 < limit; ++i) {
      if (b[i] == '\r' && b[i + 1] == '\n' && b[i + 2] == '\r' && b[i + 3] == '\n') {
        end = i - pos;
        break;
      }
    }
    if (end == kNone) return false;
    serve::HotHead head;
    if (!serve::parse_hot_head(b + pos, end, names_, head)) return false;
    if (model != kNone && head.model != model) return false;
    model = head.model;
    if (head.length > config_.max_body_bytes) return false;
    if (budget_[0] + static_cast<double>(head.length) > budget_[1]) return false;
    const std::size_t body_at = pos + end + 4;
    if (n - body_at < head.length) return false;
    serve::JsonRows got;
    if (!serve::read_json_rows(b + body_at, head.length, served_[model].inputs, rows_, got)) return false;
    if (got.rows > served_[model].chunk_rows) return false;
    requests_.push_back({got.rows, got.flat, body_at + head.length - pos});
    pos = body_at + head.length;
  }
  // Every request is whole and of the form: they are this path's now. The turn's check phase
  // answers them (and ends the turn's admission), whatever becomes of this connection.
  ArmCheck();
  Served& s = served_[model];
  const float* x = rows_.data();
  for (const Request& r : requests_) {
    bool overloaded = false;
    if (!s.burst) {
      s.burst = true;
    } else if (s.queued_requests > 0 && s.queued_rows + r.rows > config_.max_queue_rows) {
      overloaded = true;
    } else {
      ++s.queued_requests;
      s.queued_rows += r.rows;
    }
    if (!overloaded) {
      if (s.rows + r.rows > s.chunk_rows) {
        RunBatch(s);
        // Released when that batch failed (a model disposed since): its rest goes back unread.
        if (c->released) return false;
      }
      s.x.insert(s.x.end(), x, x + r.rows * s.inputs);
      s.rows += r.rows;
    }
    x += r.rows * s.inputs;
    s.parts.push_back({c, overloaded ? 0 : r.rows, r.flat, overloaded, r.bytes});
    ++c->queued;
  }
  c->model = model;
  return !c->released;
}

void Engine::ArmCheck() {
  if (check_active_) return;
  check_active_ = true;
  uv_check_start(&check_, OnCheck);
}

const std::string& Engine::Date() {
  const std::time_t now = std::time(nullptr);
  if (now != date_second_) {
    date_second_ = now;
    date_ = serve::http_date(now);
  }
  return date_;
}

void Engine::RunBatch(Served& s) {
  if (s.parts.empty()) return;
  std::vector<Part> parts;
  parts.swap(s.parts);
  const std::size_t rows = s.rows;
  s.rows = 0;
  // Rows of connections released since they were read are not answered here (the TypeScript
  // path reads them again): they are not counted, and a batch of only those is not run.
  std::size_t live_rows = 0, live_requests = 0;
  for (const Part& p : parts) {
    if (p.conn->released || p.overloaded) continue;
    live_rows += p.rows;
    ++live_requests;
  }
  bool ok = live_rows == 0;  // nothing to predict
  std::shared_ptr<Predictor> model = live_rows == 0 ? nullptr : s.model.lock();
  if (model) {
    s.y.resize(rows * s.outputs);
    try {
      model->predict(s.x.data(), rows, s.y.data());
      ok = true;
    } catch (...) {
      // Left to the TypeScript path, which words the failure (a 500) as it always has.
    }
  }
  s.x.clear();
  if (!ok) {
    for (const Part& p : parts) Release(p.conn, "model");
    return;
  }
  if (live_rows > 0) {
    s.batch_rows.observe(config_.batch_buckets, static_cast<double>(live_rows));
    s.batch_requests.observe(config_.batch_buckets, static_cast<double>(live_requests));
  }
  const std::string& date = Date();
  const float* y = s.y.data();
  for (const Part& p : parts) {
    Conn* c = p.conn;
    if (!c->released) {
      if (p.overloaded) {
        serve::append_overloaded_answer(c->out, s.overloaded_body, config_.retry_after, date, config_.tail);
        ++c->refused;
      } else {
        serve::append_json_answer(c->out, y, p.rows, s.outputs, p.flat, date, config_.tail);
      }
      c->in_done += p.bytes;
      --c->queued;
      ++c->answered;
    }
    y += p.rows * s.outputs;
  }
}

void Engine::OnCheck(uv_check_t* handle) {
  auto* engine = static_cast<Engine*>(handle->data);
  try {
    engine->Flush();
  } catch (...) {
    engine->Close(true);  // an allocation failed mid-turn: every connection goes back whole
  }
}

void Engine::Flush() {
  for (Served& s : served_) {
    RunBatch(s);
    s.burst = false;
    s.queued_requests = s.queued_rows = 0;
  }
  std::vector<Conn*> turn;
  turn.swap(turn_);
  check_active_ = false;
  uv_check_stop(&check_);
  for (Conn* c : turn) {
    c->in_turn = false;
    if (c->released) continue;
    std::size_t written = 0;
    bool failed = false;
    while (written < c->out.size()) {
      const ssize_t n = ::send(c->fd, c->out.data() + written, c->out.size() - written, kSendFlags);
      if (n > 0) {
        written += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        failed = true;  // EAGAIN: the client is not reading; or the connection failed
        break;
      }
    }
    const std::uint64_t now = uv_hrtime();
    CountAnswers(c, now);
    c->active_at = now;
    c->model = kNone;
    c->out.erase(0, written);
    if (failed || c->in_done != c->in.size()) {
      Release(c, "write");
      continue;
    }
    c->in.clear();
    c->in_done = 0;
  }
}

void Engine::OnTimer(uv_timer_t* handle) {
  try {
    static_cast<Engine*>(handle->data)->Sweep();
  } catch (...) {
    // An allocation failed: the sweep runs again at the next tick.
  }
}

void Engine::Sweep() {
  const std::uint64_t now = uv_hrtime();
  const double headers_ns = config_.headers_timeout_ms * 1e6;
  const double idle_ns = config_.keep_alive_ms * 1e6;
  std::vector<std::pair<Conn*, const char*>> late;
  for (const auto& entry : conns_) {
    Conn* c = entry.second;
    if (c->in_turn) continue;
    const auto quiet = static_cast<double>(now - c->active_at);
    // As on the TypeScript path: a connection that never sent a whole request gets node's 408
    // after headersTimeoutMs; one that did is closed after keepAliveMs without traffic.
    if (!c->served && quiet >= headers_ns) late.emplace_back(c, "late");
    else if (c->served && quiet >= idle_ns) late.emplace_back(c, "idle");
  }
  for (const auto& [c, reason] : late) Release(c, reason);
}

void Engine::CountAnswers(Conn* c, std::uint64_t now) {
  // Counted when written to the socket (or handed over to be), as the TypeScript path counts at
  // socket.write.
  if (c->model != kNone && c->answered > 0) {
    Served& s = served_[c->model];
    const double seconds = static_cast<double>(now - c->read_at) / 1e9;
    s.latency.observe(config_.latency_buckets, seconds, static_cast<double>(c->answered));
    s.answered += static_cast<double>(c->answered - c->refused);
    s.refused += static_cast<double>(c->refused);
    c->served = true;
  }
  c->answered = 0;
  c->refused = 0;
}

void Engine::Forget(double id) {
  const auto it = conns_.find(id);
  if (it != conns_.end()) Release(it->second, "gone", false);
}

void Engine::Release(Conn* c, const char* reason, bool call_js) {
  if (c->released) return;
  CountAnswers(c, uv_hrtime());
  c->released = true;
  conns_.erase(c->id);
  // Stopped and closed now, before JS can start node's own reading of the fd.
  uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), OnConnClosed);
  std::string unread = c->in.substr(c->in_done);
  std::string unwritten = std::move(c->out);
  c->in.clear();
  c->out.clear();
  if (!call_js || config_.on_release.IsEmpty()) return;
  const bool ended = std::strcmp(reason, "end") == 0 || std::strcmp(reason, "error") == 0;
  if (ended && unread.empty() && unwritten.empty()) {
    // The client left with nothing owed either way: JS only has to close the socket, which it
    // does for a list of them at a time (HandOverEnded).
    ended_.push_back(c->id);
    uv_idle_start(&idle_, OnIdle);
    return;
  }
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  auto bytes = [&](const std::string& s) -> napi_value {
    if (s.empty()) return env.Undefined();
    return Napi::Buffer<char>::Copy(env, s.data(), s.size());
  };
  try {
    config_.on_release.MakeCallback(env.Global(), {Napi::Number::New(env, c->id), Napi::String::New(env, reason),
                                                      bytes(unread), bytes(unwritten), Napi::Boolean::New(env, c->served)});
  } catch (const Napi::Error& e) {
    // The handler is TypeScript's own and catches its errors; should one escape, it is reported
    // as any uncaught exception rather than lost in a libuv callback.
    napi_fatal_exception(env_, e.Value());
  }
}

void Engine::OnIdle(uv_idle_t* handle) {
  try {
    static_cast<Engine*>(handle->data)->HandOverEnded(kEndedPerTurn);
  } catch (...) {
    // An allocation failed: tried again next turn.
  }
}

void Engine::HandOverEnded(std::size_t limit) {
  const std::size_t count = std::min(limit, ended_.size() - ended_at_);
  if (count == 0 || config_.on_ended.IsEmpty()) {
    ended_.clear();
    ended_at_ = 0;
    uv_idle_stop(&idle_);
    return;
  }
  Napi::Env env(env_);
  Napi::HandleScope scope(env);
  // Made first: if this allocation fails, the ids stay queued for the next turn.
  Napi::Float64Array ids = Napi::Float64Array::New(env, count);
  std::memcpy(ids.Data(), ended_.data() + ended_at_, count * sizeof(double));
  // Taken off the queue before JS runs (it may close the server, which hands over the rest).
  ended_at_ += count;
  if (ended_at_ == ended_.size()) {
    ended_.clear();
    ended_at_ = 0;
    uv_idle_stop(&idle_);
  }
  try {
    config_.on_ended.MakeCallback(env.Global(), {ids});
  } catch (const Napi::Error& e) {
    napi_fatal_exception(env_, e.Value());
  }
}

void Engine::OnConnClosed(uv_handle_t* handle) {
  auto* c = static_cast<Conn*>(handle->data);
  Engine* engine = c->engine;
  if (c->fd >= 0) ::close(c->fd);
  delete c;
  engine->HandleClosed();
}

void Engine::OnOwnClosed(uv_handle_t* handle) { static_cast<Engine*>(handle->data)->HandleClosed(); }

void Engine::HandleClosed() {
  if (--open_handles_ > 0 || !closed_) return;
  if (hook_ != nullptr) {
    napi_remove_async_cleanup_hook(hook_);
    hook_ = nullptr;
  }
  std::shared_ptr<Engine> last = std::move(self_);  // may delete this on leaving
}

void Engine::Close(bool call_js) {
  if (closed_) return;
  closed_ = true;
  std::vector<Conn*> all;
  for (const auto& entry : conns_) all.push_back(entry.second);
  for (Conn* c : all) Release(c, "close", call_js);
  if (call_js) HandOverEnded(ended_.size());
  ended_.clear();
  ended_at_ = 0;
  uv_idle_stop(&idle_);
  if (check_active_) uv_check_stop(&check_);
  check_active_ = false;
  turn_.clear();
  for (Served& s : served_) {
    s.parts.clear();
    s.x.clear();
    s.rows = 0;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), OnOwnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), OnOwnClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&idle_), OnOwnClosed);
  // The callback closes over the server, which holds this object: a strong reference kept past
  // close() would keep the server, its models and their weights alive for good.
  config_.on_release.Reset();
  config_.on_ended.Reset();
  config_.budget.Reset();
}

void Engine::OnCleanup(napi_async_cleanup_hook_handle /*hook*/, void* arg) {
  auto* engine = static_cast<Engine*>(arg);
  // The environment is going away: no JS runs, every handle closes, and the hook is removed
  // when the last one has (HandleClosed).
  engine->Close(false);
}

Napi::Value Engine::TakeStats(Napi::Env env) {
  Napi::Array out = Napi::Array::New(env, served_.size());
  std::vector<double> v;
  for (std::size_t i = 0; i < served_.size(); ++i) {
    Served& s = served_[i];
    v.clear();
    v.push_back(s.answered);
    v.push_back(s.refused);
    s.answered = s.refused = 0;
    s.latency.append_to(v);
    s.batch_rows.append_to(v);
    s.batch_requests.append_to(v);
    Napi::Float64Array a = Napi::Float64Array::New(env, v.size());
    std::memcpy(a.Data(), v.data(), v.size() * sizeof(double));
    out.Set(static_cast<uint32_t>(i), a);
  }
  return out;
}

#endif  // MLPKIT_HAS_SOCKET_PATH

// ---- the JS object ----------------------------------------------------------------------------

Napi::Function SocketPathWrap::DefineClass(Napi::Env env) {
  return ObjectWrap<SocketPathWrap>::DefineClass(env, "SocketPath",
                                                 {
                                                     InstanceMethod<&SocketPathWrap::Adopt>("adopt"),
                                                     InstanceMethod<&SocketPathWrap::Forget>("forget"),
                                                     InstanceMethod<&SocketPathWrap::TakeStats>("takeStats"),
                                                     InstanceMethod<&SocketPathWrap::Close>("close"),
                                                 });
}

SocketPathWrap::SocketPathWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SocketPathWrap>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal()) {
    throw Napi::TypeError::New(env, "SocketPath: made by createSocketPath(options), not called directly");
  }
#ifdef MLPKIT_HAS_SOCKET_PATH
  auto* config = info[0].As<Napi::External<SocketPathConfig>>().Data();
  if (config->models.empty()) throw Napi::TypeError::New(env, "SocketPath: no models");
  engine_ = std::make_shared<Engine>(env, std::move(*config));
  engine_->Start(engine_);
#else
  throw Napi::Error::New(env, "SocketPath: this build of the addon has no native socket path");
#endif
}

SocketPathWrap::~SocketPathWrap() {
  // Collected without close(): nothing may call JS from a finalizer, so connections still here
  // are dropped from the poll (their sockets stay paused, as they were handed to this path).
#ifdef MLPKIT_HAS_SOCKET_PATH
  if (engine_) engine_->Close(false);
#endif
}

Napi::Value SocketPathWrap::Adopt(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "SocketPath.adopt", [&]() -> Napi::Value {
    ExpectArgs(info, 2, "SocketPath.adopt");
    const double id = NumberArg(info[0], "SocketPath.adopt", "id");
    const double fd = NumberArg(info[1], "SocketPath.adopt", "fd");
    if (!(fd >= 0 && fd <= 2147483647.0) || fd != static_cast<double>(static_cast<int>(fd))) {
      throw RangeError(env, "SocketPath.adopt: expected fd to be a non-negative integer but received " + FormatNumber(fd));
    }
#ifdef MLPKIT_HAS_SOCKET_PATH
    return Napi::Boolean::New(env, engine_->Adopt(id, static_cast<int>(fd)));
#else
    return Napi::Boolean::New(env, false);
#endif
  });
}

Napi::Value SocketPathWrap::Forget(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "SocketPath.forget", [&]() -> Napi::Value {
    ExpectArgs(info, 1, "SocketPath.forget");
    const double id = NumberArg(info[0], "SocketPath.forget", "id");
#ifdef MLPKIT_HAS_SOCKET_PATH
    engine_->Forget(id);
#else
    (void)id;
#endif
    return env.Undefined();
  });
}

Napi::Value SocketPathWrap::TakeStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "SocketPath.takeStats", [&]() -> Napi::Value {
#ifdef MLPKIT_HAS_SOCKET_PATH
    return engine_->TakeStats(env);
#else
    return Napi::Array::New(env);
#endif
  });
}

Napi::Value SocketPathWrap::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "SocketPath.close", [&]() -> Napi::Value {
#ifdef MLPKIT_HAS_SOCKET_PATH
    engine_->Close(true);
#endif
    return env.Undefined();
  });
}

// ---- the factory and the test hooks ----------------------------------------------------------

namespace {

double PositiveOption(const Napi::Object& o, const char* key) {
  const double v = NumberArg(o.Get(key), "createSocketPath", key);
  if (!(v >= 1 && v <= 9007199254740991.0)) {
    throw RangeError(o.Env(), std::string("createSocketPath: expected ") + key + " >= 1 but received " + FormatNumber(v));
  }
  return v;
}

std::vector<double> BoundsOption(const Napi::Object& o, const char* key) {
  const Napi::Value v = o.Get(key);
  if (!v.IsArray()) throw TypeError(o.Env(), std::string("createSocketPath: ") + key + " must be an array of numbers, got " + Describe(v));
  const auto a = v.As<Napi::Array>();
  std::vector<double> out;
  for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(NumberArg(a.Get(i), "createSocketPath", key));
  return out;
}

}  // namespace

Napi::Value CreateSocketPath(const Napi::CallbackInfo& info, const std::function<std::shared_ptr<Predictor>(const Napi::Value&)>& resolve,
                             const Napi::FunctionReference& socket_path_class) {
  Napi::Env env = info.Env();
  ExpectArgs(info, 1, "createSocketPath");
  if (!info[0].IsObject()) throw TypeError(env, "createSocketPath: options must be an object, got " + Describe(info[0]));
  const Napi::Object o = info[0].As<Napi::Object>();
  SocketPathConfig config;
  const Napi::Value models = o.Get("models");
  if (!models.IsArray() || models.As<Napi::Array>().Length() == 0) {
    throw TypeError(env, "createSocketPath: models must be a non-empty array, got " + Describe(models));
  }
  const auto list = models.As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    const Napi::Value item = list.Get(i);
    if (!item.IsObject()) throw TypeError(env, "createSocketPath: models[" + std::to_string(i) + "] must be an object");
    const auto m = item.As<Napi::Object>();
    const Napi::Value name = m.Get("name");
    if (!name.IsString()) throw TypeError(env, "createSocketPath: models[" + std::to_string(i) + "].name must be a string");
    SocketPathModel served;
    served.name = name.As<Napi::String>().Utf8Value();
    served.model = resolve(m.Get("model"));
    served.chunk_rows = static_cast<std::size_t>(PositiveOption(m, "chunkRows"));
    const Napi::Value overloaded = m.Get("overloadedBody");
    if (!overloaded.IsString()) throw TypeError(env, "createSocketPath: models[" + std::to_string(i) + "].overloadedBody must be a string");
    served.overloaded_body = overloaded.As<Napi::String>().Utf8Value();
    config.models.push_back(std::move(served));
  }
  const Napi::Value tail = o.Get("tail");
  if (!tail.IsString()) throw TypeError(env, "createSocketPath: tail must be a string, got " + Describe(tail));
  config.tail = tail.As<Napi::String>().Utf8Value();
  const Napi::Value retry_after = o.Get("retryAfter");
  if (!retry_after.IsString()) throw TypeError(env, "createSocketPath: retryAfter must be a string, got " + Describe(retry_after));
  config.retry_after = retry_after.As<Napi::String>().Utf8Value();
  config.max_body_bytes = static_cast<std::size_t>(PositiveOption(o, "maxBodyBytes"));
  config.max_queue_rows = static_cast<std::size_t>(PositiveOption(o, "maxQueueRows"));
  config.max_pipelined = static_cast<std::size_t>(PositiveOption(o, "maxPipelined"));
  config.headers_timeout_ms = PositiveOption(o, "headersTimeoutMs");
  config.keep_alive_ms = PositiveOption(o, "keepAliveMs");
  config.check_every_ms = PositiveOption(o, "checkEveryMs");
  const ArrayArg<double> budget = TypedArg<double>(o.Get("budget"), "createSocketPath", "budget");
  if (budget.ElementLength() != 2) throw RangeError(env, "createSocketPath: budget must hold 2 values [held, limit]");
  config.budget = Napi::Persistent(budget.Object().As<Napi::Float64Array>());
  config.latency_buckets = BoundsOption(o, "latencyBuckets");
  config.batch_buckets = BoundsOption(o, "batchBuckets");
  const Napi::Value on_release = o.Get("onRelease");
  if (!on_release.IsFunction()) throw TypeError(env, "createSocketPath: onRelease must be a function, got " + Describe(on_release));
  config.on_release = Napi::Persistent(on_release.As<Napi::Function>());
  const Napi::Value on_ended = o.Get("onEnded");
  if (!on_ended.IsFunction()) throw TypeError(env, "createSocketPath: onEnded must be a function, got " + Describe(on_ended));
  config.on_ended = Napi::Persistent(on_ended.As<Napi::Function>());
  return socket_path_class.New({Napi::External<SocketPathConfig>::New(env, &config)});
}

// serveParseHead(bytes: Uint8Array, end: number, names: string[]) -> [model, length] | null
Napi::Value ServeParseHead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "serveParseHead", [&]() -> Napi::Value {
    ExpectArgs(info, 3, "serveParseHead");
    const ArrayArg<std::uint8_t> b = TypedArg<std::uint8_t>(info[0], "serveParseHead", "bytes");
    const double end = NumberArg(info[1], "serveParseHead", "end");
    if (!(end >= 0 && end <= static_cast<double>(b.ElementLength()))) throw RangeError(env, "serveParseHead: end out of range");
    std::vector<std::string> names;
    const auto a = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) names.push_back(a.Get(i).As<Napi::String>().Utf8Value());
    serve::HotHead head;
    if (!serve::parse_hot_head(b.Data(), static_cast<std::size_t>(end), names, head)) return env.Null();
    Napi::Array out = Napi::Array::New(env, 2);
    out.Set(0u, Napi::Number::New(env, static_cast<double>(head.model)));
    out.Set(1u, Napi::Number::New(env, static_cast<double>(head.length)));
    return out;
  });
}

// serveReadRows(bytes: Uint8Array, width: number) -> { x: Float32Array, rows, flat } | null
Napi::Value ServeReadRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "serveReadRows", [&]() -> Napi::Value {
    ExpectArgs(info, 2, "serveReadRows");
    const ArrayArg<std::uint8_t> b = TypedArg<std::uint8_t>(info[0], "serveReadRows", "bytes");
    const double width = NumberArg(info[1], "serveReadRows", "width");
    if (!(width >= 1 && width <= 1e6)) throw RangeError(env, "serveReadRows: width out of range");
    std::vector<float> rows;
    serve::JsonRows got;
    if (!serve::read_json_rows(b.Data(), b.ElementLength(), static_cast<std::size_t>(width), rows, got)) return env.Null();
    Napi::Float32Array x = Napi::Float32Array::New(env, rows.size());
    std::memcpy(x.Data(), rows.data(), rows.size() * sizeof(float));
    Napi::Object out = Napi::Object::New(env);
    out.Set("x", x);
    out.Set("rows", Napi::Number::New(env, static_cast<double>(got.rows)));
    out.Set("flat", Napi::Boolean::New(env, got.flat));
    return out;
  });
}

// serveAnswer(y: Float32Array, rows, width, flat, date, tail) -> the whole answer's text
Napi::Value ServeAnswer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "serveAnswer", [&]() -> Napi::Value {
    ExpectArgs(info, 6, "serveAnswer");
    const ArrayArg<float> y = TypedArg<float>(info[0], "serveAnswer", "y");
    const double rows = NumberArg(info[1], "serveAnswer", "rows");
    const double width = NumberArg(info[2], "serveAnswer", "width");
    if (!(rows >= 1 && width >= 1 && rows * width == static_cast<double>(y.ElementLength()))) {
      throw RangeError(env, "serveAnswer: rows x width must be y.length");
    }
    std::string out;
    serve::append_json_answer(out, y.Data(), static_cast<std::size_t>(rows), static_cast<std::size_t>(width),
                              info[3].ToBoolean().Value(), info[4].ToString().Utf8Value(), info[5].ToString().Utf8Value());
    return Napi::String::New(env, out);
  });
}

// serveHttpDate(seconds) -> the Date header's value
Napi::Value ServeHttpDate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return Guard(env, "serveHttpDate", [&]() -> Napi::Value {
    ExpectArgs(info, 1, "serveHttpDate");
    const double seconds = NumberArg(info[0], "serveHttpDate", "seconds");
    if (!(seconds >= 0 && seconds < 253402300800.0)) throw RangeError(env, "serveHttpDate: seconds out of range");
    return Napi::String::New(env, serve::http_date(static_cast<std::time_t>(seconds)));
  });
}

}  // namespace mlpkit::addon
