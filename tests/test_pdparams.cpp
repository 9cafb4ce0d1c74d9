// labels: sanitize
// Paddle weights files (train/pdparams.h, train/tar_archive.h, train/weights_file.h): every fixture of
// tests/golden/pdparams/ (written by tools/make_pdparams_fixtures.py with paddle.save) loads with the
// names, numpy dtypes, shapes and values of its expected.json (also rewritten as numpy 2, Fortran-order
// and big-endian pickles); the PaddleSeg-style .tar.gz gives its single model.pdparams; two *.pdparams
// in an archive, every truncation, byte flips, foreign opcodes and globals give one-line errors naming
// the file (never a crash: ASan label); a DarkNet53
// backbone file lands in the engine's YOLOv3 through PaddleDetection's suffix rule, a shape
// mismatch skipped with its [SKIP] line, the rest untouched, and the summary line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "base/error.h"
#include "models/det_model.h"
#include "tests/harness/golden.h"
#include "train/pdparams.h"
#include "train/tar_archive.h"
#include "train/weights_file.h"

namespace fs = std::filesystem;
using namespace engine;
using namespace engine::train;

namespace {

fs::path fixture(const std::string& name) { return engine::testing::golden_dir() / "pdparams" / name; }

nlohmann::json expected() {
  std::ifstream in(fixture("expected.json"));
  EXPECT_TRUE(in) << engine::testing::golden_missing_message(fixture("expected.json"));
  return nlohmann::json::parse(in);
}

std::string bytes_of(const fs::path& p) { return read_file_bytes(p.string()); }

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v((size_t)t.numel());
  for (int64_t k = 0; k < t.numel(); ++k) switch (t.dtype()) {
      case DType::F32:
        v[k] = t.data<float>()[k];
        break;
      case DType::I64:
        v[k] = (double)t.data<int64_t>()[k];
        break;
      case DType::I32:
        v[k] = t.data<int32_t>()[k];
        break;
      case DType::U8:
        v[k] = t.data<uint8_t>()[k];
        break;
      default:
        ADD_FAILURE() << "unexpected dtype";
    }
  return v;
}

DType engine_dtype(const std::string& numpy) {
  if (numpy == "int64") return DType::I64;
  if (numpy == "int32") return DType::I32;
  if (numpy == "uint8" || numpy == "bool") return DType::U8;
  return DType::F32;  // float32, and float16 / float64 converted
}

// Names, numpy dtypes, shapes, every listed value (exact) and the sum of one parsed file.
void check_against(const PdparamsFile& f, const nlohmann::json& want, const std::string& what) {
  ASSERT_EQ(f.tensors.size(), want.size()) << what;
  for (const auto& t : f.tensors) {
    SCOPED_TRACE(what + " / " + t.name);
    ASSERT_TRUE(want.contains(t.name));
    const auto& w = want[t.name];
    EXPECT_EQ(t.numpy_dtype, w["dtype"].get<std::string>());
    EXPECT_EQ(t.tensor.dtype(), engine_dtype(t.numpy_dtype));
    EXPECT_EQ(t.tensor.shape(), w["shape"].get<Shape>());
    const std::vector<double> got = values_of(t.tensor);
    const auto& vals = w["values"];
    ASSERT_EQ(vals.size(), std::min<size_t>(got.size(), 64));
    for (size_t k = 0; k < vals.size(); ++k) {
      if (t.tensor.dtype() == DType::I64)
        EXPECT_EQ(t.tensor.data<int64_t>()[k], vals[k].get<int64_t>()) << "element " << k;
      else
        EXPECT_EQ(got[k], vals[k].get<double>()) << "element " << k;
    }
    double sum = 0;
    for (double v : got) sum += v;
    const double want_sum = w["sum"].get<double>();
    EXPECT_NEAR(sum, want_sum, 1e-6 * std::max(1.0, std::fabs(want_sum)));
  }
}

// A private temporary folder, removed at exit.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("test_pdparams_" + std::to_string(::getpid()));
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string write_temp(const std::string& name, const std::string& bytes) {
  static TempDir temp;
  const fs::path dir = temp.path;
  fs::create_directories(dir);
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << bytes;
  return p.string();
}

}  // namespace

TEST(Pdparams, EveryFixtureMatchesExpected) {
  const auto exp = expected();
  for (const char* name : {"dtypes_p4.pdparams", "dtypes_p2.pdparams", "tuple_form.pdparams", "bigsplit_p2.pdparams",
                           "darknet53_subset.pdparams"}) {
    const PdparamsFile f = read_pdparams(fixture(name).string());
    check_against(f, exp[name], name);
  }
}

TEST(Pdparams, ProtocolOrderAndSource) {
  const PdparamsFile p4 = read_pdparams(fixture("dtypes_p4.pdparams").string());
  const PdparamsFile p2 = read_pdparams(fixture("dtypes_p2.pdparams").string());
  EXPECT_EQ(p4.protocol, 4);
  EXPECT_EQ(p2.protocol, 2);
  // Python's insertion order, not sorted.
  ASSERT_GE(p4.tensors.size(), 3u);
  EXPECT_EQ(p4.tensors[0].name, "conv.weight");
  EXPECT_EQ(p4.tensors[1].name, "bn._mean");
  EXPECT_EQ(p4.tensors[2].name, "half");
  for (size_t k = 0; k < p4.tensors.size(); ++k) EXPECT_EQ(p4.tensors[k].name, p2.tensors[k].name);
  // The split array is joined back where the big-array info said, with its original shape.
  const PdparamsFile big = read_pdparams(fixture("bigsplit_p2.pdparams").string());
  ASSERT_EQ(big.tensors.size(), 2u);
  EXPECT_EQ(big.tensors[1].name, "head.weight");
  EXPECT_EQ(big.tensors[1].tensor.shape(), (Shape{5, 3}));
}

TEST(WeightsFile, DispatchesOnContent) {
  const auto exp = expected();
  // A .pdparams under another name still loads (content, not extension).
  const std::string renamed = write_temp("weights.bin", bytes_of(fixture("dtypes_p2.pdparams")));
  const LoadedTensors w = read_weights_file(renamed, "model.pretrained");
  EXPECT_EQ(w.metadata.at("source_format"), "pdparams");
  EXPECT_EQ(w.metadata.at("pickle_protocol"), "2");
  ASSERT_NE(w.find("steps"), nullptr);
  EXPECT_EQ(w.find("steps")->data<int64_t>()[3], -(int64_t(1) << 62));

  // safetensors keeps working through the same entry point.
  const std::string st = (fs::path(renamed).parent_path() / "w.safetensors").string();
  save_safetensors(st, {{"a", Tensor::from_vector({1.f, 2.f}, {2})}});
  const LoadedTensors s = read_weights_file(st, "model.pretrained");
  EXPECT_EQ(s.metadata.at("source_format"), "safetensors");
  EXPECT_EQ(s.tensors.size(), 1u);

  // A gzip-compressed .pdparams.
  const std::string tgz = bytes_of(fixture("PP_Fixture.tar.gz"));
  const std::string tar = gunzip(tgz.data(), tgz.size(), "PP_Fixture.tar.gz");
  const TarArchive a = TarArchive::from_bytes(tar, "PP_Fixture.tar");
  const std::string member = a.read("PP_Fixture/model.pdparams");
  EXPECT_EQ(member, bytes_of(fixture("dtypes_p4.pdparams")));

  const std::string missing =
      error_of([&] { read_weights_file("/nonexistent/x.pdparams", "model.backbone.pretrained"); });
  EXPECT_EQ(missing, "model.backbone.pretrained: /nonexistent/x.pdparams: file not found");
  EXPECT_NE(error_of([&] {
              read_weights_file(fs::path(renamed).parent_path().string(), "--model_path");
            }).find("--model_path: "),
            std::string::npos);
  const std::string html = write_temp("page.pdparams", "<!DOCTYPE html><html>not found</html>");
  const std::string e = error_of([&] { read_weights_file(html, "pretrain_weights"); });
  EXPECT_EQ(e.rfind("pretrain_weights: " + html + ": not a weights file", 0), 0u) << e;
  EXPECT_NE(e.find("first bytes: 3c 21 44"), std::string::npos) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos);
}

TEST(TarArchive, PaddleSegLayoutPicksTheSinglePdparams) {
  const TarArchive a = TarArchive::open(fixture("PP_Fixture.tar.gz").string());
  std::vector<std::string> names;
  for (const auto& m : a.members()) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"PP_Fixture/._model.pdparams", "PP_Fixture/model.pdparams",
                                             "PP_Fixture/README.txt"}));
  EXPECT_EQ(a.single_with_suffix(".pdparams").name, "PP_Fixture/model.pdparams");

  const LoadedTensors w = read_weights_file(fixture("PP_Fixture.tar.gz").string(), "model.backbone.pretrained");
  EXPECT_EQ(w.metadata.at("archive_member"), "PP_Fixture/model.pdparams");
  const LoadedTensors direct = read_weights_file(fixture("dtypes_p4.pdparams").string(), "k");
  ASSERT_EQ(w.tensors.size(), direct.tensors.size());
  for (size_t k = 0; k < w.tensors.size(); ++k) {
    EXPECT_EQ(w.tensors[k].first, direct.tensors[k].first);
    EXPECT_EQ(values_of(w.tensors[k].second), values_of(direct.tensors[k].second));
  }

  const std::string two = fixture("two_pdparams.tar").string();
  const std::string e = error_of([&] { read_weights_file(two, "model.pretrained"); });
  EXPECT_EQ(e, "model.pretrained: " + two +
                   ": expected exactly one *.pdparams file in the archive, found 2 (members: a/model.pdparams, "
                   "b/model.pdparams)");
  EXPECT_NE(error_of([&] { a.read("nope"); }).find("no member 'nope'"), std::string::npos);
}

TEST(Pdparams, TruncatedFilesGiveErrors) {
  for (const char* name : {"dtypes_p4.pdparams", "dtypes_p2.pdparams", "bigsplit_p2.pdparams"}) {
    const std::string b = bytes_of(fixture(name));
    for (size_t n = 0; n < b.size(); ++n) {
      const std::string e = error_of([&] { parse_pdparams(b.data(), n, "cut.pdparams"); });
      ASSERT_EQ(e.rfind("cut.pdparams: ", 0), 0u) << name << " cut at " << n << ": " << e;
      ASSERT_EQ(e.find('\n'), std::string::npos) << e;
    }
  }
  // Truncated archives, compressed or not.
  const std::string tgz = bytes_of(fixture("PP_Fixture.tar.gz"));
  for (size_t n = 0; n < tgz.size(); n += 7) {
    const std::string e =
        error_of([&] { TarArchive::from_bytes(tgz.substr(0, n), "cut.tar.gz").single_with_suffix(".pdparams"); });
    ASSERT_EQ(e.rfind("cut.tar.gz: ", 0), 0u) << n << ": " << e;
  }
  const std::string tar = gunzip(tgz.data(), tgz.size(), "t");
  const std::string e = error_of([&] { TarArchive::from_bytes(tar.substr(0, 2000), "cut.tar"); });
  EXPECT_NE(e.find("truncated archive"), std::string::npos) << e;
  const std::string cut_path = write_temp("cut.tar.gz", tgz.substr(0, tgz.size() / 2));
  const std::string e2 = error_of([&] { read_weights_file(cut_path, "model.pretrained"); });
  EXPECT_EQ(e2.rfind("model.pretrained: " + cut_path + ": truncated gzip data", 0), 0u) << e2;
}

TEST(Pdparams, ByteFlipsNeverCrash) {
  std::mt19937 rng(7);
  for (const char* name : {"dtypes_p4.pdparams", "dtypes_p2.pdparams", "tuple_form.pdparams", "bigsplit_p2.pdparams"}) {
    const std::string orig = bytes_of(fixture(name));
    int errors = 0;
    for (int trial = 0; trial < 400; ++trial) {
      std::string b = orig;
      const int flips = 1 + (int)(rng() % 3);
      for (int k = 0; k < flips; ++k) b[rng() % b.size()] = (char)(rng() % 256);
      try {
        parse_pdparams(b.data(), b.size(), "flip.pdparams");
      } catch (const Error& e) {
        ++errors;
        ASSERT_EQ(std::string(e.what()).rfind("flip.pdparams: ", 0), 0u) << e.what();
      }
    }
    EXPECT_GT(errors, 0) << name;
  }
  // Corrupt compressed data.
  std::string tgz = bytes_of(fixture("PP_Fixture.tar.gz"));
  for (size_t k = 20; k < 200; ++k) tgz[k] = (char)(tgz[k] ^ 0x5a);
  EXPECT_NE(error_of([&] { gunzip(tgz.data(), tgz.size(), "bad.tar.gz"); }).find("bad.tar.gz: corrupt gzip data"),
            std::string::npos);
}

TEST(Pdparams, ForeignPicklesAreRefusedWithOffsetAndOpcode) {
  auto err = [](const std::string& b) { return error_of([&] { parse_pdparams(b.data(), b.size(), "x.pdparams"); }); };
  // paddle.save never writes os.system: the GLOBAL at byte 2 is refused, not executed.
  EXPECT_EQ(err(std::string("\x80\x02"
                            "cos\nsystem\n",
                            13)),
            "x.pdparams: byte 2: opcode 0x63 (GLOBAL): global 'os.system' is not allowed (a .pdparams file holds "
            "numpy arrays in dicts, lists and tuples; nothing else is executed)");
  EXPECT_NE(err(std::string("\x80\x04\x8c\x08"
                            "builtins\x8c\x04"
                            "eval\x93",
                            19))
                .find("byte 18: opcode 0x93 (STACK_GLOBAL): global 'builtins.eval'"),
            std::string::npos);
  EXPECT_EQ(err(std::string("\x80\x02}\x81", 4)),
            "x.pdparams: byte 3: opcode 0x81 (NEWOBJ): not supported (a .pdparams file holds numpy arrays in dicts; "
            "nothing else is read)");
  EXPECT_EQ(err(std::string("\x80\x05}.", 4)),
            "x.pdparams: byte 0: opcode 0x80 (PROTO): pickle protocol 5 (paddle.save writes 2 to 4)");
  EXPECT_NE(err("}.").find("byte 0: opcode 0x7d (EMPTY_DICT): not a pickle of protocol 2 or later"), std::string::npos);
  EXPECT_NE(err(std::string("\x80\x02h\x05", 4)).find("memo entry 5 was never stored"), std::string::npos);
  EXPECT_NE(err(std::string("\x80\x02\x85.", 4)).find("byte 2: opcode 0x85 (TUPLE1): stack underflow"),
            std::string::npos);
  EXPECT_EQ(err(std::string("\x80\x02]q\x00h\x00\x61.", 9)),
            "x.pdparams: the pickle holds a list, expected a dict of tensors "
            "(paddle.save of a state_dict)");
  EXPECT_EQ(err(std::string("\x80\x02}X\x01\x00\x00\x00"
                            "aK\x01s.",
                            13)),
            "x.pdparams: no tensors in the file (1 top-level entries without a numpy array: 'a')");
  // A dtype the engine does not hold: uint16 (how Paddle stores bfloat16) is named.
  std::string p2 = bytes_of(fixture("dtypes_p2.pdparams"));
  const size_t at =
      p2.find(std::string("X\x02\x00\x00\x00"
                          "f2",
                          7));
  ASSERT_NE(at, std::string::npos);
  p2[at + 5] = 'u';
  const std::string e = err(p2);
  EXPECT_EQ(e,
            "x.pdparams: tensor 'half': dtype uint16 (Paddle stores bfloat16 tensors as uint16) is not supported "
            "(float32, float16, float64, int64, int32, uint8, bool are)");
}

TEST(DetectionPretrain, DarkNetBackboneFileFillsYoloByPaddleDetectionSuffixRule) {
  nn::DetModelSpec spec;
  spec.backbone = "DarkNet53";
  spec.num_classes = 3;
  auto model = nn::build_det_model(spec);
  std::map<std::string, std::vector<double>> before;
  for (const auto& [name, t] : model->state_dict()) before[name] = values_of(t);

  const LoadedTensors file = read_weights_file(fixture("darknet53_subset.pdparams").string(), "pretrain_weights");
  std::ostringstream log;
  const nn::StateDict entries = match_state_dict_by_suffix(model->state_dict(), file, &log);
  const nn::LoadReport r = model->load_matching(entries, &log);

  std::map<std::string, std::string> filled;  // model key -> file key
  for (const char* layer : {"conv0", "downsample0.conv_bn_layer", "stage.0.basicblock0.conv1"})
    for (const char* p :
         {".conv.weight", ".batch_norm.weight", ".batch_norm.bias", ".batch_norm._mean", ".batch_norm._variance"})
      filled[std::string("backbone.") + layer + p] = std::string(layer) + p;
  EXPECT_EQ(r.loaded, (int64_t)filled.size());
  EXPECT_EQ(r.total, (int64_t)before.size());
  EXPECT_EQ(r.summary,
            "There are 15/" + std::to_string(before.size()) + " variables loaded into " + model->type_name() + ".");

  for (const auto& [name, t] : model->state_dict()) {
    auto it = filled.find(name);
    if (it != filled.end())
      EXPECT_EQ(values_of(t), values_of(*file.find(it->second))) << name;
    else
      EXPECT_EQ(values_of(t), before[name]) << name << " must be untouched";
  }
  const std::string out = log.str();
  EXPECT_NE(out.find("WARNING: [SKIP] Shape of pretrained params backbone.stage.0.basicblock0.conv2.conv.weight "
                     "doesn't match.(Pretrained: "),
            std::string::npos)
      << out;
  // conv0.conv.weight also ends the neck's conv_module.conv0 keys; their shapes differ, so no ambiguity.
  EXPECT_NE(out.find("[SKIP] Shape of pretrained params neck.yolo_block.0.conv_module.conv0.conv.weight"),
            std::string::npos);
  EXPECT_NE(
      out.find("WARNING: 1 keys in pretrained weight are not used in the model, and will not be loaded: fc.weight"),
      std::string::npos)
      << out;
  EXPECT_NE(out.find(r.summary), std::string::npos);
}

TEST(DetectionPretrain, SuffixRuleDetails) {
  auto t = [](int64_t n) { return Tensor::zeros({n}); };
  LoadedTensors f;
  f.path = "w.pdparams";
  f.tensors = {{"b.w", t(2)}, {"a.b.w", t(2)}, {"backbone.res5.x", t(4)}, {"w", t(3)}};
  const nn::StateDict model = {{"net.a.b.w", t(2)}, {"backbone.head.res5.x", t(4)}, {"other.w", t(5)}, {"ab.w", t(2)}};
  const nn::StateDict m = match_state_dict_by_suffix(model, f, nullptr);
  std::map<std::string, int64_t> got;
  for (const auto& [k, v] : m) got[k] = v.shape()[0];
  // Longest dotted suffix wins; "backbone.res5.x" is compared as "res5.x"; "ab.w" takes "w" (not "b.w":
  // a suffix must start after a dot), shape 3 vs 2 is left for load_matching to skip.
  EXPECT_EQ(got, (std::map<std::string, int64_t>{
                     {"net.a.b.w", 2}, {"backbone.head.res5.x", 4}, {"other.w", 3}, {"ab.w", 3}}));

  // One file key filling two same-shape model keys is ambiguous, as in PaddleDetection.
  LoadedTensors g;
  g.path = "g.pdparams";
  g.tensors = {{"conv.weight", t(2)}};
  const nn::StateDict two = {{"x.conv.weight", t(2)}, {"y.conv.weight", t(2)}};
  EXPECT_EQ(
      error_of([&] { match_state_dict_by_suffix(two, g, nullptr); }),
      "g.pdparams: ambiguous pretrained weight 'conv.weight': it matches both 'x.conv.weight' and 'y.conv.weight' in "
      "the model");
}

TEST(Pdparams, NumpyVariants) {
  const std::string p4 = bytes_of(fixture("dtypes_p4.pdparams"));
  const PdparamsFile orig = parse_pdparams(p4.data(), p4.size(), "p4");
  const Tensor& w = orig.tensors[0].tensor;  // conv.weight [4, 3, 3, 3]
  ASSERT_EQ(orig.tensors[0].name, "conv.weight");

  // numpy >= 2 pickles the module as numpy._core.multiarray.
  std::string np2 = p4;
  const std::string old_mod = std::string("\x8c\x15") + "numpy.core.multiarray";
  const size_t m = np2.find(old_mod);
  ASSERT_NE(m, std::string::npos);
  np2.replace(m, old_mod.size(), std::string("\x8c\x16") + "numpy._core.multiarray");
  const PdparamsFile f2 = parse_pdparams(np2.data(), np2.size(), "np2");
  EXPECT_EQ(values_of(f2.tensors[0].tensor), values_of(w));

  // is_fortran = True: the same bytes read column-major.
  std::string fo = p4;
  const std::string flag = std::string(
      "b\x89"
      "B\xb0\x01\x00\x00",
      7);  // BUILD, NEWFALSE, BINBYTES 432
  const size_t at = fo.find(flag);
  ASSERT_NE(at, std::string::npos);
  fo[at + 1] = '\x88';
  const Tensor ft = parse_pdparams(fo.data(), fo.size(), "fortran").tensors[0].tensor;
  for (int64_t i0 = 0; i0 < 4; ++i0)
    for (int64_t i1 = 0; i1 < 3; ++i1)
      for (int64_t i2 = 0; i2 < 3; ++i2)
        for (int64_t i3 = 0; i3 < 3; ++i3)
          ASSERT_EQ(ft.data<float>()[((i0 * 3 + i1) * 3 + i2) * 3 + i3],
                    w.data<float>()[i0 + 4 * i1 + 12 * i2 + 36 * i3]);

  // Byte order '>' (the memoized '<' is shared by every multi-byte dtype): values byte-swapped.
  std::string be = p4;
  const size_t lt = be.find(std::string("\x8c\x01<", 3));
  ASSERT_NE(lt, std::string::npos);
  be[lt + 2] = '>';
  const PdparamsFile bf = parse_pdparams(be.data(), be.size(), "big-endian");
  uint32_t a, b;
  std::memcpy(&a, &w.data<float>()[5], 4);
  std::memcpy(&b, &bf.tensors[0].tensor.data<float>()[5], 4);
  EXPECT_EQ(b, __builtin_bswap32(a));
  for (const auto& t : bf.tensors)
    if (t.name == "steps") {
      EXPECT_EQ(t.tensor.data<int64_t>()[0], (int64_t)__builtin_bswap64(1));
    }
}

TEST(TarArchive, LongNamesFromPaxAndGnuHeaders) {
  const auto exp = expected();
  for (const char* name : {"long_pax.tar.gz", "long_gnu.tar.gz"}) {
    const TarArchive a = TarArchive::open(fixture(name).string());
    ASSERT_EQ(a.members().size(), 1u) << name;
    EXPECT_EQ(a.members()[0].name, exp[name]["member"].get<std::string>()) << name;
    const LoadedTensors w = read_weights_file(fixture(name).string(), "pretrain_weights");
    EXPECT_EQ(w.metadata.at("archive_member"), exp[name]["member"].get<std::string>());
    ASSERT_EQ(w.tensors.size(), 1u);
    EXPECT_EQ(w.tensors[0].first, "w");
  }
}
