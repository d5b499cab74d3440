#include "tokenizer/pre_types.h"

#include "core/error.h"

namespace nc {

namespace {

// The regexes below are the pre_tokenizer patterns of the models' tokenizer.json files (the
// Oniguruma syntax there is also PCRE2's); where a file uses a construct PCRE2 lacks (character
// class intersection) it is written with an equivalent lookahead.
#define CONTRACTIONS "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
#define SPACES_TAIL R"re(|\s*[\r\n]+|\s+(?!\S)|\s+)re"

// GPT-2 (the ByteLevel pre-tokenizer's own regex).
constexpr const char* kGpt2 =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
// Llama 3, DBRX, ChatGLM-4: digits in runs of up to three.
constexpr const char* kLlama3 = CONTRACTIONS
    R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)re" SPACES_TAIL;
// Qwen2: digits one by one.
constexpr const char* kQwen2 =
    CONTRACTIONS R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)re" SPACES_TAIL;
// Qwen3.5: combining marks stay with their letters.
constexpr const char* kQwen35 = CONTRACTIONS
    R"re(|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*)re" SPACES_TAIL;
// Jais 2: Llama 3 with whitespace runs cut into power-of-two lengths.
constexpr const char* kJais2 = CONTRACTIONS
    R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+)re"
    R"re(|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S))re"
    R"re(|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1})re";
// cl100k/o200k-style (GPT-4o, Llama 4, MiniMax-M2): case-aware words.
#define UPPERS R"re([\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}])re"
#define LOWERS R"re([\p{Ll}\p{Lm}\p{Lo}\p{M}])re"
#define O200K_WORDS                                              \
  R"re([^\r\n\p{L}\p{N}]?)re" UPPERS "*" LOWERS "+" CONTRACTIONS \
  "?"                                                            \
  R"re(|[^\r\n\p{L}\p{N}]?)re" UPPERS "+" LOWERS "*" CONTRACTIONS "?"
constexpr const char* kGpt4o =
    O200K_WORDS R"re(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)re" SPACES_TAIL;
// Tekken (Mistral Nemo): the same words without contractions, digits one by one.
constexpr const char* kTekken =
    R"re([^\r\n\p{L}\p{N}]?)re" UPPERS "*" LOWERS R"re(+|[^\r\n\p{L}\p{N}]?)re" UPPERS "+" LOWERS
    R"re(*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)re" SPACES_TAIL;
// Granite multilingual embedding (97m): letters or marks that are not a-z / A-Z.
constexpr const char* kGraniteMulti =
    R"re([^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])*(?:(?=[\p{L}\p{M}])[^A-Z])+)re" CONTRACTIONS
    R"re(?|[^\r\n\p{L}\p{N}]?(?:(?=[\p{L}\p{M}])[^a-z])+(?:(?=[\p{L}\p{M}])[^A-Z])*)re" CONTRACTIONS
    R"re(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*)re" SPACES_TAIL;
// Kimi K2 (tiktoken): Han runs first; the letter classes exclude Han ([..&&[^\p{Han}]]).
#define NO_HAN "(?!\\p{Han})"
constexpr const char* kKimiK2 =
    R"re(\p{Han}+|[^\r\n\p{L}\p{N}]?(?:)re" NO_HAN UPPERS ")*(?:" NO_HAN LOWERS ")+" CONTRACTIONS
    R"re(?|[^\r\n\p{L}\p{N}]?(?:)re" NO_HAN UPPERS ")+(?:" NO_HAN LOWERS ")*" CONTRACTIONS
    R"re(?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)re" SPACES_TAIL;
// StarCoder-style: digits isolated first, then GPT-2.
constexpr const char* kDigit = R"re(\p{N})re";
// DeepSeek LLM (v1/v2): explicit cased-letter, punctuation and CJK classes.
constexpr const char* kDeepseekLetters =
    "\\s?"
    "[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-"
    "\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}"
    "\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}"
    "\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-"
    "\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}"
    "\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-"
    "\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-"
    "\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-"
    "\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}"
    "\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}"
    "\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-"
    "\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-"
    "\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
    "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-"
    "\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-"
    "\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-"
    "\\x{118DF}\\x{1E900}-\\x{1E943}]"
    "+";
constexpr const char* kCjk = "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+";
// DeepSeek V3 (and Hunyuan dense, JoyAI, HY v4): CJK runs, then symbol-led ASCII words.
constexpr const char* kDeepseek3Cjk =
    "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+";
#define SYMBOL_WORDS \
  R"re([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)re"
constexpr const char* kDeepseek3 = SYMBOL_WORDS R"re(| ?[\p{P}\p{S}]+[\r\n]*)re" SPACES_TAIL;
constexpr const char* kSpark25 = SYMBOL_WORDS R"re(| ?[\p{P}\p{S}]+|[\r\n]|\s+(?!\S)|\s+)re";
// BLOOM, Poro, GPT-3 Finnish: anything up to whitespace or a few punctuation marks.
constexpr const char* kBloom =
    R"re( ?[^(\s|.,!?\x{2026}\x{3002}\x{FF0C}\x{3001}\x{964}\x{6D4}\x{60C})]+)re";
// Digits grouped by three from the right ("1234567" -> 1 234 567).
constexpr const char* kThousands = R"re(\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N})))re";
constexpr const char* kNewlines = R"re([^\n]+|[\n]+)re";

PreSplit iso(const char* pattern) {
  return {pattern, SplitBehavior::kIsolated, false};
}

std::vector<PreSplit> chain(std::initializer_list<const char*> patterns) {
  std::vector<PreSplit> out;
  for (const char* p : patterns) out.push_back(iso(p));
  return out;
}

enum Flag : unsigned {
  kIgnoreMerges = 1,
  kAddBos = 2,
  kRawUtf8 = 4,
  kWholeNewlines = 8,
  kSpm = kRawUtf8 | 16
};

struct Entry {
  const char* name;
  int family;  // index into families()
  unsigned flags;
};

// Split chains, one per family of names.
const std::vector<std::vector<PreSplit>>& families() {
  static const std::vector<std::vector<PreSplit>> f = {
      /*0 default*/ chain(
          {R"re([\p{P}\$\+<=>\^~\|]+)re", kGpt2, R"re(\p{N}+)re", "[0-9][0-9][0-9]"}),
      /*1 gpt-2*/ chain({kGpt2}),
      /*2 llama3*/ chain({kLlama3}),
      /*3 qwen2*/ chain({kQwen2}),
      /*4 starcoder*/ chain({kDigit, kGpt2}),
      /*5 deepseek-llm*/
      chain({"[\r\n]", kDeepseekLetters,
             "\\s?[!-/"
             ":-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
             "\\s+$", kCjk, "\\p{N}+"}),
      /*6 deepseek-coder*/ chain({"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", kCjk, "\\p{N}"}),
      /*7 deepseek-v3*/ chain({"\\p{N}{1,3}", kDeepseek3Cjk, kDeepseek3}),
      /*8 falcon*/ chain({R"re([\p{P}\$\+<=>\^~\|`]+)re", kGpt2, "[0-9][0-9][0-9]"}),
      /*9 qwen35*/ chain({kQwen35}),
      /*10 jais-2*/ chain({kJais2}),
      /*11 bloom*/ chain({kBloom}),
      /*12 viking*/ chain({kBloom, kDigit}),
      /*13 tekken*/ chain({kTekken}),
      /*14 chameleon*/
      chain({"<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", "([\\t\\n]|    |  )",
             kDigit, R"re([\p{P}!-/:-@\[-`{-~])re", kGpt2}),
      /*15 gpt-4o*/ chain({kGpt4o}),
      /*16 granite-embed-multi-97m*/ chain({kGraniteMulti}),
      /*17 tiny_aya*/ chain({R"re(\d{1,3}(?=(?:\d{3})*\b))re", kGpt4o}),
      /*18 kimi-k2*/ chain({kKimiK2}),
      /*19 superbpe*/ chain({"\\p{N}+", R"re((?=(\d{3})+(?!\d)))re"}),
      /*20 bailingmoe*/
      chain(
          {R"re('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+)re"}),
      /*21 seed-coder*/
      chain({CONTRACTIONS
             R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+)re" SPACES_TAIL}),
      /*22 ufakzeka*/
      chain({R"re([^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)re" SPACES_TAIL}),
      /*23 afmoe*/
      chain({kThousands,
             "[\\x{4E00}-\\x{9FFF}\\x{3400}-\\x{4DBF}\\x{F900}-\\x{FAFF}\\x{3040}-\\x{309F}\\x{"
             "30A0}-\\x{30FF}\\x{FF65}-\\x{FF9F}\\x{2F00}-\\x{2FDF}\\x{E40}-\\x{E7F}\\x{E80}-\\x{"
             "EFF}\\x{1780}-\\x{17FF}\\x{1000}-\\x{109F}\\x{AA60}-\\x{AA7F}\\x{A9E0}-\\x{A9FF}\\x{"
             "AC00}-\\x{D7AF}\\x{1100}-\\x{11FF}]+",
             kDeepseek3}),
      /*24 laguna*/ chain({kNewlines, kQwen2}),
      /*25 exaone-moe*/
      chain(
          {CONTRACTIONS
           R"re(|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+)re"}),
      /*26 gemma4*/ chain({kNewlines}),
      /*27 minicpm5*/
      chain({"\\p{N}{1,3}", CONTRACTIONS
             R"re(|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*)re" SPACES_TAIL}),
      /*28 whitespace (raw UTF-8)*/ {PreSplit{"\\s+", SplitBehavior::kRemoved, false}},
      /*29 youtu*/
      chain({"[\\x{AC00}-\\x{D7A3}\\x{3131}-\\x{318E}]+|[\\x{FF01}\\x{2026}\\x{201C}\\x{201D}\\x{"
             "2018}\\x{2019}\\x{2014}\\x{FF1A}\\x{FF1B}\\x{FF0C}\\x{3001}-\\x{303F}\\x{FE30}-\\x{"
             "FE4F}]+|[\\x{3105}-\\x{312F}]+|[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{"
             "30FF}]+",
             R"re([^\r\n\p{L}\p{N}]?)re" UPPERS "*" LOWERS "+" CONTRACTIONS
             R"re(?|[^\r\n\p{L}\p{N}]?)re" UPPERS "+" LOWERS "*" CONTRACTIONS
             R"re(?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*)re" SPACES_TAIL}),
      /*30 spark2_5*/ chain({"\\p{N}{1,3}", kDeepseek3Cjk, kSpark25, "\\p{N}"}),
  };
  return f;
}

constexpr Entry kEntries[] = {
    {"default", 0, 0},
    {"gpt-2", 1, 0},
    {"phi-2", 1, 0},
    {"jina-es", 1, 0},
    {"jina-de", 1, 0},
    {"gigachat", 1, 0},
    {"jina-v2-es", 1, 0},
    {"jina-v2-de", 1, 0},
    {"a.x-4.0", 1, 0},
    {"mellum", 1, 0},
    {"modern-bert", 1, 0},
    {"jina-v1-en", 1, 0},
    {"jina-v2-code", 1, 0},
    {"roberta-bpe", 1, 0},
    {"exaone4", 1, 0},
    {"mpt", 1, 0},
    {"olmo", 1, 0},
    {"jais", 1, 0},
    {"trillion", 1, 0},
    {"granite-docling", 1, 0},
    {"llama3", 2, kIgnoreMerges | kAddBos},
    {"llama-v3", 2, kIgnoreMerges | kAddBos},
    {"llama-bpe", 2, kIgnoreMerges | kAddBos},
    {"falcon3", 2, kIgnoreMerges | kAddBos},
    {"falcon-h1", 2, kIgnoreMerges | kAddBos},
    {"pixtral", 2, kIgnoreMerges | kAddBos},
    {"midm-2.0", 2, kIgnoreMerges | kAddBos},
    {"lfm2", 2, kIgnoreMerges | kAddBos},
    {"jina-v5-nano", 2, kIgnoreMerges | kAddBos},
    {"dbrx", 2, 0},
    {"smaug-bpe", 2, 0},
    {"chatglm-bpe", 2, 0},
    {"glm4", 2, kIgnoreMerges},
    {"glm5", 2, kIgnoreMerges},
    {"qwen2", 3, 0},
    {"deepseek-r1-qwen", 3, 0},
    {"kormo", 3, 0},
    {"f2llmv2", 3, 0},
    {"megrez", 3, 0},
    {"stablelm2", 3, 0},
    {"hunyuan", 3, 0},
    {"solar-open", 3, 0},
    {"grok-2", 3, 0},
    {"starcoder", 4, 0},
    {"refact", 4, 0},
    {"command-r", 4, 0},
    {"smollm", 4, 0},
    {"codeshell", 4, 0},
    {"exaone", 4, 0},
    {"minerva-7b", 4, 0},
    {"mellum2", 4, 0},
    {"deepseek-llm", 5, 0},
    {"deepseek-coder", 6, 0},
    {"deepseek-v3", 7, 0},
    {"hunyuan-dense", 7, 0},
    {"joyai-llm", 7, 0},
    {"hy_v4", 7, 0},
    {"falcon", 8, 0},
    {"qwen35", 9, 0},
    {"jais-2", 10, 0},
    {"bloom", 11, 0},
    {"poro-chat", 11, 0},
    {"gpt3-finnish", 11, 0},
    {"viking", 12, 0},
    {"tekken", 13, kIgnoreMerges | kAddBos},
    {"chameleon", 14, kAddBos},
    {"gpt-4o", 15, 0},
    {"llama4", 15, 0},
    {"kanana2", 15, 0},
    {"talkie", 15, 0},
    {"minimax-m2", 15, 0},
    {"granite-embed-multi-97m", 16, kIgnoreMerges},
    {"tiny_aya", 17, 0},
    {"cohere2moe", 17, 0},
    {"kimi-k2", 18, 0},
    {"superbpe", 19, 0},
    {"bailingmoe", 20, 0},
    {"bailingmoe2", 20, 0},
    {"llada-moe", 20, 0},
    {"seed-coder", 21, 0},
    {"ufakzeka", 22, 0},
    {"afmoe", 23, 0},
    {"laguna", 24, 0},
    {"exaone-moe", 25, 0},
    {"gemma4", 26, kSpm | kAddBos | kWholeNewlines},
    {"granite-embed-multi-311m", 26, kSpm | kAddBos | kWholeNewlines},
    {"sarvam-moe", 26, kSpm},
    {"minicpm5", 27, kIgnoreMerges},
    {"whitespace", 28, kRawUtf8},
    {"youtu", 29, kIgnoreMerges},
    {"spark2_5", 30, 0},
};

}  // namespace

PreTokenizerConfig pre_tokenizer_config(const std::string& name) {
  const std::string key = name.empty() ? "default" : name;
  for (const Entry& e : kEntries) {
    if (key != e.name) continue;
    PreTokenizerConfig c;
    c.name = key;
    c.steps = families().at(e.family);
    c.ignore_merges = e.flags & kIgnoreMerges;
    c.add_bos = e.flags & kAddBos;
    c.raw_utf8 = e.flags & kRawUtf8;
    c.whole_newlines = e.flags & kWholeNewlines;
    c.escape_spaces = (e.flags & kSpm) == kSpm;
    return c;
  }
  std::string known;
  for (const Entry& e : kEntries) known += std::string(known.empty() ? "" : ", ") + e.name;
  fail_as(ErrorKind::Unsupported,
          "unsupported tokenizer pre-tokenizer '{}' (tokenizer.ggml.pre); known: {}", name, known);
}

std::vector<std::string> known_pre_tokenizers() {
  std::vector<std::string> out;
  for (const Entry& e : kEntries) out.push_back(e.name);
  return out;
}

}  // namespace nc
