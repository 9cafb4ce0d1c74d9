// The one list of ops (engine/ops/op_list.inc) against the sources: every entry's CPU kernel is
// declared in kernels/cpu/*.h and its CUDA kernel in kernels/cuda|cudnn|cublas headers; its test file
// exists, and where the name is a public function of engine/ops/*.h, that file calls it (or names it
// in a string literal; backward-only names are reached through their forward op's gradient checks);
// its bench_kernels row is registered in bench/*.cpp; its name appears as a string literal somewhere
// in engine/ops/*.cpp (not necessarily in a dispatch). Every name dispatched literally
// (ENGINE_DISPATCH("...")) is listed, and a dispatch under an unlisted name is refused at run time.
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "engine/ops/op_list.h"
#include "engine/ops/op_utils.h"
#include "engine/tensor.h"

namespace fs = std::filesystem;
using namespace engine;

namespace {

const fs::path kRoot = fs::path(__FILE__).parent_path().parent_path();

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// All files under `dir` (relative to the root) whose extension is in `exts`, read once.
const std::map<std::string, std::string>& sources(const std::string& dir, const std::set<std::string>& exts) {
  static std::map<std::string, std::map<std::string, std::string>> cache;
  std::string key = dir;
  for (const std::string& e : exts) key += " " + e;
  auto& m = cache[key];
  if (m.empty() && fs::is_directory(kRoot / dir))
    for (const auto& e : fs::directory_iterator(kRoot / dir))
      if (exts.count(e.path().extension().string())) m[e.path().filename().string()] = read(e.path());
  return m;
}

bool ident_char(char c) { return std::isalnum((unsigned char)c) || c == '_'; }

// `fn` as a whole identifier followed by optional white space and "(". (Scanned by hand: GCC 12's
// std::regex trips -Wmaybe-uninitialized in the sanitizer build.)
bool declares(const std::map<std::string, std::string>& files, const std::string& fn) {
  for (const auto& [name, text] : files) {
    for (size_t at = text.find(fn); at != std::string::npos; at = text.find(fn, at + 1)) {
      if (at > 0 && ident_char(text[at - 1])) continue;
      size_t k = at + fn.size();
      while (k < text.size() && std::isspace((unsigned char)text[k])) ++k;
      if (k < text.size() && text[k] == '(') return true;
    }
  }
  return false;
}

// The op names of the literal dispatches in `src`: ENGINE_DISPATCH( "name" ...
std::vector<std::string> literal_dispatches(const std::string& src) {
  const std::string head = "ENGINE_DISPATCH(";
  std::vector<std::string> names;
  for (size_t at = src.find(head); at != std::string::npos; at = src.find(head, at + 1)) {
    size_t k = at + head.size();
    while (k < src.size() && std::isspace((unsigned char)src[k])) ++k;
    if (k >= src.size() || src[k] != '"') continue;
    size_t e = k + 1;
    while (e < src.size() &&
           (std::islower((unsigned char)src[e]) || std::isdigit((unsigned char)src[e]) || src[e] == '_'))
      ++e;
    if (e < src.size() && src[e] == '"' && e > k + 1) names.push_back(src.substr(k + 1, e - k - 1));
  }
  return names;
}

}  // namespace

TEST(OpList, NamesAreUniqueAndComplete) {
  std::set<std::string> seen;
  for (const OpInfo& op : op_list()) {
    EXPECT_TRUE(seen.insert(op.name).second) << op.name << " is listed twice";
    for (const char* f : {op.cpu_kernel, op.cuda_kernel, op.test, op.bench_row}) EXPECT_STRNE(f, "") << op.name;
  }
  EXPECT_GE(op_list().size(), 60u);
}

TEST(OpList, EveryOpHasItsKernelsTestAndBenchRow) {
  const auto& cpu = sources("kernels/cpu", {".h"});
  std::map<std::string, std::string> cuda;
  for (const char* d : {"kernels/cuda", "kernels/cudnn", "kernels/cublas"})
    for (const auto& [n, t] : sources(d, {".h", ".cuh"})) cuda[std::string(d) + "/" + n] = t;
  const auto& op_headers = sources("engine/ops", {".h"});
  const auto& benches = sources("bench", {".cpp"});
  for (const OpInfo& op : op_list()) {
    EXPECT_TRUE(declares(cpu, op.cpu_kernel))
        << op.name << ": CPU kernel " << op.cpu_kernel << " is not declared in kernels/cpu/*.h";
    EXPECT_TRUE(declares(cuda, op.cuda_kernel))
        << op.name << ": CUDA kernel " << op.cuda_kernel << " is not declared in kernels/cuda|cudnn|cublas/*.h";
    const fs::path test = kRoot / "tests" / (std::string(op.test) + ".cpp");
    ASSERT_TRUE(fs::exists(test)) << op.name << ": test file " << test << " does not exist";
    // An op that is a public function is called (or named to the op harness) by its test; backward
    // dispatches are reached through the gradient checks of their forward op.
    if (declares(op_headers, op.name)) {
      const std::string text = read(test);
      EXPECT_TRUE(declares({{test.string(), text}}, op.name) ||
                  text.find("\"" + std::string(op.name) + "\"") != std::string::npos)
          << op.name << ": " << test << " never calls it";
    }
    const std::string row = op.bench_row;
    const size_t slash = row.find('/');
    ASSERT_NE(slash, std::string::npos) << op.name << ": bench row '" << row << "' is not family/kernel";
    const std::string family = row.substr(0, slash), kernel = row.substr(slash + 1);
    bool found = false;
    for (const auto& [n, text] : benches)
      if (text.find("BENCH_REGISTER(" + family + ")") != std::string::npos &&
          (text.find("\"" + kernel + "\"") != std::string::npos || text.find("\"" + kernel + " ") != std::string::npos))
        found = true;
    EXPECT_TRUE(found) << op.name << ": no bench_kernels row " << row << " in bench/*.cpp";
  }
}

TEST(OpList, ListedNamesAreDispatchedAndLiteralDispatchesAreListed) {
  std::string ops_src;
  for (const auto& [n, text] : sources("engine/ops", {".cpp"})) ops_src += text;
  for (const OpInfo& op : op_list())
    EXPECT_NE(ops_src.find("\"" + std::string(op.name) + "\""), std::string::npos)
        << op.name << " is listed but no engine/ops/*.cpp names it (a stale entry?)";
  const std::vector<std::string> dispatched = literal_dispatches(ops_src);
  EXPECT_GE(dispatched.size(), 10u) << "the scan found too few ENGINE_DISPATCH(\"...\") calls";
  for (const std::string& name : dispatched)
    EXPECT_TRUE(is_listed_op(name)) << name << " is dispatched but not in engine/ops/op_list.inc";
}

TEST(OpList, AnUnlistedDispatchIsRefused) {
  Tensor t = Tensor::zeros({4}, DType::F32, Device::cpu());
  bool ran = false;
  try {
    ENGINE_DISPATCH("not_a_listed_op", t.device(), traffic(t), ran = true, ran = true);
    FAIL() << "the dispatch was not refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not_a_listed_op"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("op_list.inc"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(ran);
  ENGINE_DISPATCH("fill", t.device(), traffic(t), ran = true, ran = true);  // a listed one runs
  EXPECT_TRUE(ran);
}
