// GrammarCache and TokenGrammar (engine/grammar.h) over xgrammar.
#include "engine/grammar.h"

#include <xgrammar/xgrammar.h>
#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "core/error.h"
#include "engine/schema_support.h"

namespace nc {

const char* structured_kind_name(StructuredOutput::Kind k) {
  switch (k) {
    case StructuredOutput::Kind::None:
      return "none";
    case StructuredOutput::Kind::Json:
      return "json_object";
    case StructuredOutput::Kind::JsonSchema:
      return "json_schema";
    case StructuredOutput::Kind::Regex:
      return "regex";
    case StructuredOutput::Kind::Grammar:
      return "grammar";
    case StructuredOutput::Kind::StructuralTag:
      return "structural_tag";
  }
  return "?";
}

namespace {

// The synthetic vocabulary of a codec without text (grammar.h): ids below 256 are their byte,
// the others 2 to 8 printable characters drawn from the id (a fixed hash), as a BPE vocabulary's
// pieces are mostly short runs of text.
std::vector<std::string> synthetic_token_bytes(int vocab) {
  static constexpr std::string_view kChars =
      "etaoinshrdlucmfwypvbgkqjxz ETAOINSHRDLUCMFWYPVBGKQJXZ0123456789 .,:;'\"-_{}[]()";
  std::vector<std::string> out(static_cast<size_t>(vocab));
  for (int t = 0; t < vocab; ++t) {
    if (t < 256) {
      out[size_t(t)] = std::string(1, char(t));
      continue;
    }
    uint64_t h = uint64_t(t) * 0x9E3779B97F4A7C15ull;
    const int len = 2 + int(h % 7);
    for (int i = 0; i < len; ++i) {
      h ^= h >> 29;
      h *= 0xBF58476D1CE4E5B9ull;
      out[size_t(t)] += kChars[size_t(h % kChars.size())];
    }
  }
  return out;
}

// Each token's bytes as it continues a text (grammar.h): decode(ref, t) minus decode(ref), with
// ref a plain token, so that a SentencePiece token keeps its leading space.
std::vector<std::string> token_bytes(const TextCodec& codec, int vocab) {
  std::vector<int32_t> ref;
  try {
    ref = codec.encode_plain("a", false);
  } catch (const Error&) {
    return synthetic_token_bytes(vocab);  // no text: token ids as numbers (random weights)
  }
  if (ref.size() != 1) ref.clear();
  const std::string ref_text = ref.empty() ? "" : codec.decode(ref.data(), 1, true);
  std::vector<std::string> out(static_cast<size_t>(vocab));
  std::vector<int32_t> pair = ref;
  pair.push_back(0);
  for (int t = 0; t < vocab; ++t) {
    pair.back() = t;
    const std::string s = codec.decode(pair.data(), pair.size(), true);
    // A token the codec cannot decode with the reference (or a special one) stays "".
    if (s.size() > ref_text.size() && s.compare(0, ref_text.size(), ref_text) == 0)
      out[size_t(t)] = s.substr(ref_text.size());
  }
  return out;
}

xgrammar::CompiledGrammar compile_with(xgrammar::GrammarCompiler& c, const StructuredOutput& s) {
  using K = StructuredOutput::Kind;
  switch (s.kind) {
    // json_object is an object (OpenAI's JSON mode), written compactly: a weak model cannot
    // loop on whitespace.
    case K::Json:
      return c.CompileJSONSchema(R"({"type": "object"})", /*any_whitespace=*/false);
    case K::JsonSchema:
      check_schema_supported(s.spec);
      return c.CompileJSONSchema(s.spec, /*any_whitespace=*/false);
    case K::Regex:
      return c.CompileRegex(s.spec);
    case K::Grammar:
      return c.CompileGrammar(s.spec, "root");
    case K::StructuralTag:
      check_structural_tag_schemas(s.spec);
      return c.CompileStructuralTag(s.spec);
    case K::None:
      break;
  }
  fail_as(ErrorKind::InvalidArgument, "structured output: no grammar to compile");
}

using Key = std::pair<int, std::string>;

// xgrammar's error text without its log prefix ("[19:20:19] ../cpp/file.cc:5082: ") and the
// trailing newline: what a client is told.
std::string compiler_message(std::string_view what) {
  std::string_view m = what;
  if (m.starts_with('[')) {
    const size_t src = m.find(".cc:");
    const size_t colon = src == std::string_view::npos ? src : m.find(": ", src + 4);
    if (colon != std::string_view::npos) m.remove_prefix(colon + 2);
  }
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.remove_suffix(1);
  return std::string(m);
}

}  // namespace

// ---- TokenGrammar ----

struct TokenGrammar::Impl {
  xgrammar::GrammarMatcher matcher;
  int vocab = 0;
};

TokenGrammar::TokenGrammar(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TokenGrammar::~TokenGrammar() = default;

void TokenGrammar::fill_bitmask(std::span<int32_t> words) {
  NC_CHECK(words.size() == size_t(bitmask_words(impl_->vocab)),
           "grammar: bitmask of {} words for a vocabulary of {}", words.size(), impl_->vocab);
  int64_t shape[1] = {int64_t(words.size())};
  DLTensor t{};
  t.data = words.data();
  t.device = DLDevice{kDLCPU, 0};
  t.ndim = 1;
  t.dtype = xgrammar::GetBitmaskDLType();
  t.shape = shape;
  impl_->matcher.FillNextTokenBitmask(&t);
}

bool TokenGrammar::accept(int32_t token) {
  return impl_->matcher.AcceptToken(token);
}

bool TokenGrammar::terminated() const {
  return impl_->matcher.IsTerminated();
}

// ---- GrammarCache ----

struct GrammarCache::Impl {
  const TextCodec& codec;
  int vocab = 0;
  double timeout_s = 5;
  bool has_stop = false;
  std::once_flag info_once;
  std::shared_ptr<xgrammar::GrammarCompiler> compiler;
  mutable std::mutex mu;
  std::map<Key, std::shared_future<xgrammar::CompiledGrammar>> cache;
  std::function<void()> compile_hook;  // set_compile_hook (tests)

  Impl(const TextCodec& c, int v, double t) : codec(c), vocab(v), timeout_s(t) {}

  // The vocabulary, once, at the first structured request (a few hundred ms for 150k tokens).
  xgrammar::GrammarCompiler& get_compiler() {
    std::call_once(info_once, [&] {
      std::vector<int32_t> stops = codec.eos_token_ids();
      stops.erase(std::remove_if(stops.begin(), stops.end(),
                                 [&](int32_t id) { return id < 0 || id >= vocab; }),
                  stops.end());
      has_stop = !stops.empty();
      xgrammar::TokenizerInfo info(token_bytes(codec, vocab), xgrammar::VocabType::RAW, vocab,
                                   stops);
      const int threads = int(std::clamp(std::thread::hardware_concurrency(), 1u, 8u));
      compiler = std::make_shared<xgrammar::GrammarCompiler>(info, threads,
                                                             /*cache_enabled=*/false);
    });
    return *compiler;
  }

  // Bounds the cache (a client can send a new schema with every request): past kMaxCached
  // entries the finished ones go; compilations still running stay (their waiters hold them).
  static constexpr size_t kMaxCached = 1024;
  void drop_finished() {
    for (auto it = cache.begin(); it != cache.end();) {
      const bool done = it->second.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
      it = done ? cache.erase(it) : std::next(it);
    }
  }

  // Compilations running at once at most: one past its time limit goes on (it cannot be
  // stopped) and holds a core and its memory, so a client sending slow schemas must not be able
  // to start them without bound (review of 2026-12-07: one held a core for 90 s and 2 GB).
  static constexpr size_t kMaxCompiling = 4;
  size_t compiling() const {
    size_t n = 0;
    for (const auto& [key, f] : cache)
      n += f.wait_for(std::chrono::seconds(0)) != std::future_status::ready;
    return n;
  }

  // The compilation of s: started on a thread of its own unless one is cached.
  std::shared_future<xgrammar::CompiledGrammar> find_or_start(const StructuredOutput& s) {
    xgrammar::GrammarCompiler& c = get_compiler();
    const Key key{int(s.kind), s.spec};
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
    if (cache.size() >= kMaxCached) drop_finished();
    const size_t running = compiling();
    NC_CHECK_AS(ErrorKind::Overloaded, running < kMaxCompiling,
                "{}: {} grammars are still compiling (at most {} at once); try again later",
                structured_kind_name(s.kind), running, kMaxCompiling);
    std::promise<xgrammar::CompiledGrammar> promise;
    std::shared_future<xgrammar::CompiledGrammar> f = promise.get_future().share();
    // Detached: a compilation past the time limit finishes on its own and stays cached. It
    // holds the compiler by value (xgrammar objects share their state).
    std::thread([c, s, hook = compile_hook, p = std::move(promise)]() mutable {
      try {
        if (hook) hook();
        p.set_value(compile_with(c, s));
      } catch (...) {
        p.set_exception(std::current_exception());
      }
    }).detach();
    cache.emplace(key, f);
    return f;
  }

  xgrammar::CompiledGrammar get(const StructuredOutput& s) {
    NC_CHECK_AS(ErrorKind::InvalidArgument, s.active(), "structured output: none requested");
    std::shared_future<xgrammar::CompiledGrammar> f = find_or_start(s);
    const auto limit = std::chrono::duration<double>(timeout_s);
    NC_CHECK_AS(ErrorKind::InvalidArgument, f.wait_for(limit) == std::future_status::ready,
                "{}: the grammar did not compile within {} s", structured_kind_name(s.kind),
                timeout_s);
    try {
      return f.get();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail_as(ErrorKind::InvalidArgument, "{}: {}", structured_kind_name(s.kind),
              compiler_message(e.what()));
    }
  }
};

GrammarCache::GrammarCache(const TextCodec& codec, int vocab, double timeout_s)
    : impl_(std::make_unique<Impl>(codec, vocab, timeout_s)) {
  NC_CHECK(vocab > 0, "grammar: vocabulary of {} tokens", vocab);
}
GrammarCache::~GrammarCache() = default;

void GrammarCache::compile(const StructuredOutput& s) {
  impl_->get(s);
}

std::unique_ptr<TokenGrammar> GrammarCache::matcher(const StructuredOutput& s) {
  xgrammar::CompiledGrammar g = impl_->get(s);
  auto m = std::make_unique<TokenGrammar::Impl>(TokenGrammar::Impl{
      xgrammar::GrammarMatcher(g, std::nullopt, /*terminate_without_stop_token=*/!impl_->has_stop),
      impl_->vocab});
  return std::make_unique<TokenGrammar>(std::move(m));
}

void GrammarCache::set_compile_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->compile_hook = std::move(hook);
}

size_t GrammarCache::size() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->cache.size();
}

}  // namespace nc
