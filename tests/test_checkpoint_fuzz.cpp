// labels: sanitize
// Fixed-seed fuzz test of the checkpoint reader (train/safetensors.h): a small valid checkpoint
// (every dtype, a scalar, an empty tensor, metadata) is mutated 400 times — bit flips and byte
// overwrites in the length field, header and data, truncation, appended bytes, header lengths
// set to random or huge values, and JSON-aware edits (swapped offsets, numbers replaced by 1e400,
// -1, 2.5, 2^64, "x", null, dims whose product overflows, long names, nested arrays, duplicate,
// missing and extra keys, edited values, whitespace and escapes). Each mutated file must either
// load with exactly the original names, dtypes, shapes, bytes and metadata (only when the
// mutation kept its meaning) or throw an engine::Error of one line naming the file; any other
// exception, a crash or a sanitizer report fails. Deterministic: std::mt19937_64, fixed seed,
// no distributions (their output differs between standard libraries). FUZZ_SEED=<n> and
// FUZZ_CASES=<n> run other mutations (e.g. thousands under ASan); FUZZ_VERBOSE=1 prints every message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "train/safetensors.h"

using namespace engine;
using namespace engine::train;
namespace fs = std::filesystem;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string raw_bytes(const Tensor& t) {
  const Tensor c = t.contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

struct Parts {
  std::string header;  // JSON text as stored (with padding)
  std::string data;
};
Parts split(const std::string& file) {
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  return {file.substr(8, n), file.substr(8 + n)};
}
std::string join(const std::string& header, const std::string& data, bool pad = true) {
  std::string h = header;
  if (pad) h.append((8 - h.size() % 8) % 8, ' ');
  const uint64_t n = h.size();
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s + h + data;
}

class Fuzzer {
 public:
  Fuzzer(std::string base, uint64_t seed) : base_(std::move(base)), rng_(seed) {
    const Parts p = split(base_);
    header_ = nlohmann::json::parse(p.header);
    data_ = p.data;
    for (const auto& [k, v] : header_.items())
      if (k != "__metadata__") names_.push_back(k);
  }

  // One mutated file; `kind` says what was done, `keeps_meaning` whether it must load unchanged.
  std::string mutate(std::string& kind, bool& keeps_meaning) {
    keeps_meaning = false;
    std::string f = base_;
    const uint64_t hlen = split(base_).header.size();
    switch (below(12)) {
      case 0: {  // bit flips in one region
        const int region = (int)below(3);
        kind = region == 0 ? "bitflip:length" : region == 1 ? "bitflip:header" : "bitflip:data";
        const uint64_t lo = region == 0 ? 0 : region == 1 ? 8 : 8 + hlen;
        const uint64_t hi = region == 0 ? 8 : region == 1 ? 8 + hlen : f.size();
        for (uint64_t k = 0, n = 1 + below(3); k < n; ++k) f[lo + below(hi - lo)] ^= (char)(1u << below(8));
        return f;
      }
      case 1: {  // byte overwrites anywhere (always a different value)
        kind = "overwrite";
        for (uint64_t k = 0, n = 1 + below(4); k < n; ++k) f[below(f.size())] ^= (char)(1 + below(255));
        return f;
      }
      case 2:
        kind = "truncate";
        return f.substr(0, below(f.size()));
      case 3: {
        kind = "append";
        for (uint64_t k = 0, n = 1 + below(16); k < n; ++k) f += (char)below(256);
        return f;
      }
      case 4: {  // header length: random, huge, or off by a little
        kind = "length";
        uint64_t n;
        switch (below(4)) {
          case 0:
            n = rng_();
            break;
          case 1:
            n = UINT64_MAX - below(16);
            break;
          case 2:
            n = hlen + 1 + below(16);
            break;
          default:
            n = hlen - 1 - below(std::min<uint64_t>(hlen, 16));
        }
        std::memcpy(f.data(), &n, 8);
        return f;
      }
      default:
        return json_mutation(kind, keeps_meaning);
    }
  }

 private:
  uint64_t below(uint64_t n) { return n ? rng_() % n : 0; }
  const std::string& any_name() { return names_[below(names_.size())]; }

  // The header dumped as the writer does, with the string "@@" replaced by raw `token` text.
  std::string dump_with(const nlohmann::json& h, const std::string& token = "") const {
    std::string t = h.dump();
    const size_t at = t.find("\"@@\"");
    if (at != std::string::npos) t.replace(at, 4, token);
    return t;
  }

  // The text of entry `name` ("name":{...}) in a dumped header.
  static std::string entry_text(const std::string& text, const std::string& name) {
    const size_t a = text.find("\"" + name + "\":{");
    return text.substr(a, text.find('}', a) + 1 - a);
  }

  std::string json_mutation(std::string& kind, bool& keeps_meaning) {
    static const char* kTokens[] = {
        "1e400", "-1", "2.5", "18446744073709551616", "\"x\"", "null", "true", "[]", "{}", "0",
        "1",     "-0", "1e3", "9223372036854775808"};
    nlohmann::json h = header_;
    const std::string name = any_name();
    switch (below(11)) {
      case 0: {  // swap two tensors' offsets
        kind = "json:swap-offsets";
        std::string other = any_name();
        while (other == name) other = any_name();
        std::swap(h[name]["data_offsets"], h[other]["data_offsets"]);
        return join(dump_with(h), data_);
      }
      case 1: {  // a number (or the whole field) replaced by an odd token
        kind = "json:token";
        const char* field = below(2) ? "shape" : "data_offsets";
        auto& v = h[name][field];
        if (v.empty() || below(4) == 0)
          v = below(2) ? nlohmann::json("@@") : nlohmann::json::array({"@@"});
        else
          v[below(v.size())] = "@@";
        return join(dump_with(h, kTokens[below(std::size(kTokens))]), data_);
      }
      case 2: {  // dims whose product overflows (with and without a zero)
        kind = "json:huge-dims";
        static const char* kShapes[] = {"[4294967296,4294967296]",         "[0,4611686018427387904,4]",
                                        "[0,1099511627776,1099511627776]", "[9223372036854775807]",
                                        "[18446744073709551615]",          "[2,9223372036854775807]",
                                        "[65536,65536,65536,65536]"};
        h[name]["shape"] = "@@";
        return join(dump_with(h, kShapes[below(std::size(kShapes))]), data_);
      }
      case 3: {  // a very long name (or metadata key)
        kind = "json:long-name";
        const std::string big(1000 + below(100000), (char)('a' + below(26)));
        if (below(2)) {
          h[big] = h[name];
          h.erase(name);
        } else {
          h["__metadata__"][big] = "v";
        }
        return join(dump_with(h), data_);
      }
      case 4: {  // nested arrays where a number or list belongs
        kind = "json:nested";
        const uint64_t depth = 1 + below(300);
        h[name][below(2) ? "shape" : "data_offsets"] = "@@";
        return join(dump_with(h, std::string(depth, '[') + "1" + std::string(depth, ']')), data_);
      }
      case 5: {  // duplicate keys, with the same or another value
        kind = "json:duplicate";
        std::string t = h.dump();
        if (below(2)) {
          const std::string e = entry_text(t, name);
          std::string copy = e;
          if (below(2)) copy.replace(copy.find("\"dtype\":\"") + 9, 1, "X");
          t.insert(t.find(e) + e.size(), "," + copy);
        } else {
          const std::string e = "\"iter\":\"42\"";
          t.insert(t.find(e) + e.size(), below(2) ? ",\"iter\":\"42\"" : ",\"iter\":\"43\"");
        }
        return join(t, data_);
      }
      case 6: {  // missing keys
        kind = "json:missing";
        switch (below(4)) {
          case 0:
            h[name].erase(below(3) == 0 ? "dtype" : below(2) ? "shape" : "data_offsets");
            break;
          case 1:
            h.erase(name);
            break;
          case 2:
            h["__metadata__"].erase(below(2) ? "format" : "checksum");
            break;
          default:
            h["__metadata__"].erase("iter");
        }
        return join(dump_with(h), data_);
      }
      case 7: {  // extra keys: inside a tensor entry (ignored, the meaning stays), a tensor, metadata
        kind = "json:extra";
        switch (below(3)) {
          case 0:
            h[name]["comment"] = below(2) ? nlohmann::json("x") : nlohmann::json::array({1, 2});
            keeps_meaning = true;
            break;
          case 1:
            h["zz_new"] = {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
            break;
          default:
            h["__metadata__"]["extra"] = "1";
        }
        return join(dump_with(h), data_);
      }
      case 8: {  // values edited: dtype, metadata, name, shape of equal size, wrong types
        kind = "json:edit";
        switch (below(6)) {
          case 0:
            h[name]["dtype"] = below(2) ? "I32" : "F64";
            break;
          case 1:
            h["__metadata__"]["iter"] = "43";
            break;
          case 2:
            h[name + "_"] = h[name];
            h.erase(name);
            break;
          case 3:
            h[name]["shape"].push_back(1);
            break;
          case 4:
            h["__metadata__"]["iter"] = 42;
            break;
          default:
            h["__metadata__"] = below(2) ? nlohmann::json("x") : nlohmann::json::array();
        }
        return join(dump_with(h), data_);
      }
      case 9: {  // the header is not an object / is cut / has trailing text
        kind = "json:shape";
        const std::string t = h.dump();
        switch (below(3)) {
          case 0:
            return join("[" + t + "]", data_);
          case 1:
            return join(t.substr(0, below(t.size())), data_);
          default:
            return join(t + (below(2) ? "}" : " x"), data_);
        }
      }
      default: {  // only the spelling changes: whitespace between tokens, an escaped letter, no padding
        kind = "json:spelling";
        keeps_meaning = true;
        std::string t = h.dump(), out;
        bool in_string = false, escaped = false;
        static const char kSpace[] = {' ', '\t', '\n', '\r'};
        for (char c : t) {
          out += c;
          if (in_string) {
            if (escaped)
              escaped = false;
            else if (c == '\\')
              escaped = true;
            else if (c == '"')
              in_string = false;
            continue;
          }
          if (c == '"') in_string = true;
          if ((c == ',' || c == ':' || c == '{' || c == '[') && below(3) == 0)
            out.append(1 + below(3), kSpace[below(4)]);
        }
        const size_t at = out.find("\"" + name + "\"");
        char esc[8];
        std::snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)(unsigned char)name[0]);
        out.replace(at + 1, 1, esc);
        return join(out, data_, /*pad=*/below(2));
      }
    }
  }

  std::string base_;
  std::mt19937_64 rng_;
  nlohmann::json header_;
  std::string data_;
  std::vector<std::string> names_;
};

}  // namespace

TEST(CheckpointFuzz, MutatedFilesLoadUnchangedOrFailNamingTheFile) {
  const fs::path dir = fs::temp_directory_path() / ("engine_test_ckpt_fuzz_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string base_path = (dir / "base.safetensors").string();
  const NamedTensors tensors = {{"conv.weight", Tensor::randn({2, 3, 2}, 1)},
                                {"half", Tensor::randn({3}, 2).to(DType::F16)},
                                {"bfloat", Tensor::randn({2, 2}, 3).to(DType::BF16)},
                                {"int32", Tensor::from_vector({1, -2, 300}, {3}).to(DType::I32)},
                                {"steps", Tensor::from_vector_i64({5, -7}, {2})},
                                {"bytes", Tensor::from_vector({0, 17, 255}, {3}).to(DType::U8)},
                                {"scalar", Tensor::full({}, 0.5f)},
                                {"empty", Tensor::zeros({0, 4})}};
  save_safetensors(base_path, tensors, {{"iter", "42"}, {"note", "fuzz"}});
  const LoadedTensors ref = load_safetensors(base_path);
  ASSERT_EQ(ref.tensors.size(), tensors.size());

  // FUZZ_SEED / FUZZ_CASES explore beyond the fixed run (the assertions assume the defaults' mix).
  const char* seed_env = std::getenv("FUZZ_SEED");
  const char* cases_env = std::getenv("FUZZ_CASES");
  const int kCases = cases_env ? std::atoi(cases_env) : 400;
  Fuzzer fuzz(read_file(base_path), seed_env ? std::strtoull(seed_env, nullptr, 0) : 0x5eed5eedULL);
  const bool verbose = std::getenv("FUZZ_VERBOSE") != nullptr;  // prints every message
  int refused = 0, loaded = 0, must_load = 0;
  std::map<std::string, std::pair<int, int>> by_kind;  // kind -> (refused, loaded)
  for (int i = 0; i < kCases; ++i) {
    std::string kind;
    bool keeps_meaning = false;
    const std::string bytes = fuzz.mutate(kind, keeps_meaning);
    const std::string path = (dir / ("case_" + std::to_string(i) + ".safetensors")).string();
    write_file(path, bytes);
    SCOPED_TRACE("case " + std::to_string(i) + " (" + kind + ")");
    must_load += keeps_meaning;
    try {
      const LoadedTensors got = load_safetensors(path);
      ++loaded, ++by_kind[kind].second;
      // Loading is right only when the file still means exactly the original.
      EXPECT_EQ(got.metadata, ref.metadata);
      ASSERT_EQ(got.tensors.size(), ref.tensors.size());
      for (size_t k = 0; k < ref.tensors.size(); ++k) {
        EXPECT_EQ(got.tensors[k].first, ref.tensors[k].first);
        EXPECT_EQ(got.tensors[k].second.dtype(), ref.tensors[k].second.dtype());
        EXPECT_EQ(got.tensors[k].second.shape(), ref.tensors[k].second.shape());
        EXPECT_EQ(raw_bytes(got.tensors[k].second), raw_bytes(ref.tensors[k].second));
      }
    } catch (const Error& e) {
      ++refused, ++by_kind[kind].first;
      const std::string msg = e.what();
      if (verbose) std::printf("%d %s: %s\n", i, kind.c_str(), msg.c_str());
      EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      EXPECT_FALSE(keeps_meaning) << "a file that kept its meaning was refused: " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "not an engine::Error: " << e.what();
    } catch (...) {
      ADD_FAILURE() << "not an engine::Error (unknown exception type)";
    }
    fs::remove(path);
  }
  std::string summary;
  for (const auto& [k, v] : by_kind)
    summary += " " + k + "=" + std::to_string(v.first) + "/" + std::to_string(v.first + v.second);
  std::printf(
      "%d cases: %d refused, %d loaded unchanged (%d of them kept their meaning by construction)\n"
      "refused/total by kind:%s\n",
      kCases, refused, loaded, must_load, summary.c_str());
  EXPECT_EQ(refused + loaded, kCases);
  EXPECT_GE(refused, kCases * 8 / 10);  // the mutations do mutate
  EXPECT_GE(must_load, 10);             // and meaning-keeping ones exist (and loaded: checked above)
  EXPECT_GE(by_kind.size(), 15u);       // every family of mutations ran
  fs::remove_all(dir);
}
