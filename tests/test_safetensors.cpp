// labels: sanitize
// safetensors checkpoints (train/safetensors.h): round trips of every dtype (scalars, empty and
// non-contiguous tensors, CUDA tensors when a device exists), the exact byte layout of a small
// file and the bytes its checksum covers, one test per corruption (each must give its own one-line
// message naming the file), header edits that leave a valid file (swapped offsets, renames, shapes,
// dtypes, metadata: caught by the format-2 checksum), malformed JSON values, format-1 files of
// earlier builds, atomic replacement (a failed save leaves the old file and no temporary behind),
// and the messages of check_tensors_match. Random mutations: tests/test_checkpoint_fuzz.cpp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/harness/op_check.h"
#include "train/event_writer.h"
#include "train/safetensors.h"

using namespace engine;
using namespace engine::train;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("engine_test_st_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

std::string raw_bytes(const Tensor& t) {
  const Tensor c = t.to(Device::cpu()).contiguous();
  return std::string(static_cast<const char*>(c.raw_data()), c.nbytes());
}

// A file from a header text and data bytes (no padding, no checksum): for malformed headers.
std::string make_file(const std::string& header, const std::string& data) {
  const uint64_t n = header.size();
  std::string s(8, '\0');
  std::memcpy(s.data(), &n, 8);
  return s + header + data;
}

// Loading `bytes` must fail with a message that names the file and contains `what`.
void expect_load_error(const std::string& dir, const std::string& bytes, const std::string& what) {
  const std::string path = dir + "/bad.safetensors";
  write_file(path, bytes);
  try {
    load_safetensors(path);
    ADD_FAILURE() << "no error for: " << what;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'" + path + "'"), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

std::string eight_floats() {  // 8 bytes of data: f32 [1, 2]
  const float v[2] = {1.f, 2.f};
  return std::string(reinterpret_cast<const char*>(v), 8);
}

NamedTensors sample_tensors() {
  return {{"conv.weight", Tensor::randn({4, 3, 3, 3}, 1)},
          {"bn.num_batches", Tensor::from_vector_i64({5, -7}, {2})},
          {"half", Tensor::randn({3, 5}, 2).to(DType::F16)},
          {"bfloat", Tensor::randn({7}, 3).to(DType::BF16)},
          {"int32", Tensor::from_vector({1, -2, 300}, {3}).to(DType::I32)},
          {"bytes", Tensor::from_vector({0, 17, 255}, {3}).to(DType::U8)},
          {"scalar", Tensor::full({}, 0.5f)},
          {"empty", Tensor::zeros({0, 3})},
          {"permuted", Tensor::randn({2, 3, 4}, 4).permute({2, 0, 1})}};
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtype) {
  const std::string dir = temp_dir("roundtrip");
  const std::string path = dir + "/model.safetensors";
  const NamedTensors in = sample_tensors();
  save_safetensors(path, in, {{"iter", "500"}, {"checksum", "caller value is replaced"}});
  const LoadedTensors got = load_safetensors(path);
  EXPECT_EQ(got.path, path);
  ASSERT_EQ(got.tensors.size(), in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(got.tensors[i].first, in[i].first);  // file order = the order written
    const Tensor& t = got.tensors[i].second;
    EXPECT_TRUE(t.device().is_cpu());
    EXPECT_EQ(t.dtype(), in[i].second.dtype()) << in[i].first;
    EXPECT_EQ(t.shape(), in[i].second.shape()) << in[i].first;
    EXPECT_EQ(raw_bytes(t), raw_bytes(in[i].second)) << in[i].first;
  }
  EXPECT_EQ(got.metadata.at("iter"), "500");
  EXPECT_EQ(got.metadata.at("format"), "engine-checkpoint-2");
  EXPECT_EQ(got.metadata.at("checksum").substr(0, 7), "crc32c:");
  ASSERT_NE(got.find("permuted"), nullptr);
  EXPECT_EQ(got.find("permuted")->to_vector(), in.back().second.to_vector());
  EXPECT_EQ(got.find("nope"), nullptr);
  EXPECT_NO_THROW(check_tensors_match(got, in, "model weights"));
  fs::remove_all(dir);
}

TEST(Safetensors, CudaTensorsAreCopiedToHost) {
  if (!engine::testing::have_cuda()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = temp_dir("cuda");
  const Tensor w = Tensor::randn({8, 3}, 9);
  const Tensor h = Tensor::randn({5}, 10).to(DType::F16);
  save_safetensors(dir + "/m.safetensors", {{"w", w.to(Device::cuda(0))}, {"h", h.to(Device::cuda(0))}});
  const LoadedTensors got = load_safetensors(dir + "/m.safetensors");
  EXPECT_EQ(raw_bytes(*got.find("w")), raw_bytes(w));
  EXPECT_EQ(raw_bytes(*got.find("h")), raw_bytes(h));
  fs::remove_all(dir);
}

TEST(Safetensors, ExactByteLayout) {
  const std::string dir = temp_dir("layout");
  const std::string path = dir + "/w.safetensors";
  save_safetensors(path, {{"w", Tensor::from_vector({1.f, 2.f}, {2})}}, {{"note", "x"}});
  const std::string f = read_file(path);
  // CRC-32C of the canonical header and the 8 data bytes 00 00 80 3f 00 00 00 40 (computed with
  // the bitwise CRC-32C of tools/read_checkpoint.py).
  const std::string json =
      "{\"__metadata__\":{\"checksum\":\"crc32c:aa29188f\",\"format\":\"engine-checkpoint-2\",\"note\":\"x\"},"
      "\"w\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]}}";
  const size_t padded = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(f.size(), 8 + padded + 8);
  uint64_t n;
  std::memcpy(&n, f.data(), 8);
  EXPECT_EQ(n, padded);
  EXPECT_EQ(f.substr(8, json.size()), json);
  EXPECT_EQ(f.substr(8 + json.size(), padded - json.size()), std::string(padded - json.size(), ' '));
  EXPECT_EQ(f.substr(8 + padded), eight_floats());
  // The canonical header encoding (safetensors.h), spelled out: u64 LE integers, strings as
  // u64 length + bytes; tensors then metadata without "checksum", keys ascending.
  std::string canon;
  auto u64 = [&](uint64_t v) { canon.append(reinterpret_cast<const char*>(&v), 8); };
  auto str = [&](const std::string& v) { u64(v.size()), canon += v; };
  u64(1);                                                // tensors
  str("w"), str("F32"), u64(1), u64(2), u64(0), u64(8);  // name, dtype, ndim, dims, begin, end
  u64(2);                                                // metadata entries except "checksum"
  str("format"), str("engine-checkpoint-2"), str("note"), str("x");
  EXPECT_EQ(crc32c(eight_floats().data(), 8, crc32c(canon.data(), canon.size())), 0xaa29188fu);
  fs::remove_all(dir);
}

namespace {

// The file with its JSON header changed by `edit` and written back as the writer does (compact,
// keys sorted), padded with spaces to the old header length so the data stays in place (or, when
// it grew past that, to the next multiple of 8 with the length field updated).
template <class F>
std::string rewrite_header(const std::string& file, F edit) {
  uint64_t n;
  std::memcpy(&n, file.data(), 8);
  nlohmann::json h = nlohmann::json::parse(file.substr(8, n));
  edit(h);
  std::string text = h.dump();
  const uint64_t m = text.size() <= n ? n : (text.size() + 7) / 8 * 8;
  text.resize(m, ' ');
  std::string len(8, '\0');
  std::memcpy(len.data(), &m, 8);
  return len + text + file.substr(8 + n);
}

}  // namespace

TEST(Safetensors, HeaderEditsThatStayValidAreRefused) {
  // Each edit leaves a structurally valid file (it loads without the checksum) that means
  // something else; format 1 (data-only checksum) loaded all of them silently.
  const std::string dir = temp_dir("edits");
  const std::string good_path = dir + "/good.safetensors";
  save_safetensors(
      good_path,
      {{"alpha", Tensor::randn({2, 3}, 1)}, {"beta", Tensor::randn({6}, 2)}, {"gamma", Tensor::randn({2}, 3)}},
      {{"iter", "5"}});
  const std::string good = read_file(good_path);
  ASSERT_NO_THROW(load_safetensors(good_path));
  const std::string path = dir + "/bad.safetensors";
  auto expect_refused = [&](const char* what, const std::string& bytes) {
    SCOPED_TRACE(what);
    ASSERT_NE(bytes, good);
    write_file(path, bytes);
    ASSERT_NO_THROW(load_safetensors(path, /*verify_checksum=*/false));  // structurally valid
    try {
      load_safetensors(path);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_EQ(msg.rfind("checkpoint '" + path + "': checksum mismatch (header and data give crc32c:", 0), 0) << msg;
      EXPECT_NE(msg.find("): the file is corrupted"), std::string::npos) << msg;
    }
  };
  expect_refused("swapped data_offsets", rewrite_header(good, [](nlohmann::json& h) {
                   std::swap(h["alpha"]["data_offsets"], h["beta"]["data_offsets"]);
                 }));
  expect_refused("renamed tensor", rewrite_header(good, [](nlohmann::json& h) {
                   h["betb"] = h["beta"];
                   h.erase("beta");
                 }));
  expect_refused("shape [2,3] -> [3,2]", rewrite_header(good, [](nlohmann::json& h) { h["alpha"]["shape"] = {3, 2}; }));
  expect_refused("dtype F32 -> I32", rewrite_header(good, [](nlohmann::json& h) { h["gamma"]["dtype"] = "I32"; }));
  expect_refused("metadata iter 5 -> 9",
                 rewrite_header(good, [](nlohmann::json& h) { h["__metadata__"]["iter"] = "9"; }));
  expect_refused("metadata entry added", rewrite_header(good, [](nlohmann::json& h) { h["__metadata__"]["x"] = ""; }));
  {
    // Only the JSON spelling changes (whitespace, key order, escapes): the meaning and checksum stay.
    uint64_t n;
    std::memcpy(&n, good.data(), 8);
    std::string text = good.substr(8, n);
    text.replace(text.find("\"alpha\""), 7, "\"\\u0061lpha\"");
    text.replace(text.find("{"), 1, "{ ");
    const std::string alt = good.substr(0, 8) + text.substr(0, n) + good.substr(8 + n);
    ASSERT_EQ(alt.size(), good.size());
    write_file(path, alt);
    EXPECT_NO_THROW(load_safetensors(path));
  }
  fs::remove_all(dir);
}

TEST(Safetensors, EmptyTensorsSharingAnOffsetHaveOneOrder) {
  // Two empty tensors written at the same offset: the canonical order breaks the tie by name, so
  // the checksum does not depend on the order of the JSON keys.
  const std::string dir = temp_dir("empties");
  const std::string path = dir + "/e.safetensors";
  save_safetensors(path, {{"z", Tensor::zeros({0})}, {"a", Tensor::zeros({0, 3})}, {"m", Tensor::randn({2}, 1)}});
  const LoadedTensors got = load_safetensors(path);
  ASSERT_EQ(got.tensors.size(), 3u);
  EXPECT_EQ(got.tensors[0].first, "a");
  EXPECT_EQ(got.tensors[1].first, "z");
  EXPECT_EQ(got.tensors[2].first, "m");
  fs::remove_all(dir);
}

TEST(Safetensors, FormatOneFilesStillLoad) {
  // Written by earlier builds: format "engine-checkpoint-1", checksum of the data section alone.
  const std::string dir = temp_dir("v1");
  const std::string data = eight_floats();
  const std::string header =
      "{\"__metadata__\":{\"checksum\":\"crc32c:28c0c9b1\",\"format\":\"engine-checkpoint-1\","
      "\"iter\":\"5\"},\"w\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]}}";
  ASSERT_EQ(crc32c(data.data(), data.size()), 0x28c0c9b1u);
  write_file(dir + "/v1.safetensors", make_file(header + std::string((8 - header.size() % 8) % 8, ' '), data));
  const LoadedTensors got = load_safetensors(dir + "/v1.safetensors");
  EXPECT_EQ(got.find("w")->to_vector(), (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(got.metadata.at("format"), "engine-checkpoint-1");
  EXPECT_EQ(got.metadata.at("iter"), "5");
  // Its checksum still catches data corruption.
  std::string flipped = data;
  flipped[1] ^= 1;
  expect_load_error(dir, make_file(header, flipped), "checksum mismatch (data gives crc32c:");
  fs::remove_all(dir);
}

TEST(Safetensors, MalformedHeaderValuesNameTheFile) {
  const std::string dir = temp_dir("values");
  auto with_shape = [](const std::string& shape, const std::string& offsets = "[0,8]") {
    return make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":" + offsets + "}}",
                     eight_floats());
  };
  // nlohmann throws out_of_range (not parse_error) for numbers beyond double.
  expect_load_error(dir, with_shape("[1e400]"), "header is not valid JSON (number overflow parsing '1e400')");
  expect_load_error(dir, with_shape("[2]", "[0,1e400]"), "header is not valid JSON (number overflow");
  for (const char* bad : {"[2.0]", "[-1]", "[\"2\"]", "[true]", "[null]", "[[2]]"})
    expect_load_error(dir, with_shape(bad),
                      std::string("tensor 'a': 'shape' ") + bad + " must hold non-negative integers");
  expect_load_error(dir, with_shape("[18446744073709551616]"),  // 2^64 parses as a float
                    "tensor 'a': 'shape' [1.8446744073709552e+19] must hold non-negative integers");
  expect_load_error(dir, with_shape("2"), "tensor 'a': 'shape' 2 is not a list");
  // Too large: more bytes than 2^64, or (with a zero dim) a stride beyond int64.
  expect_load_error(dir, with_shape("[4294967296,4294967296]"),
                    "tensor 'a': 'shape' [4294967296,4294967296] is too large");
  expect_load_error(dir, with_shape("[0,1099511627776,1099511627776]", "[0,0]"),
                    "tensor 'a': 'shape' [0,1099511627776,1099511627776] is too large");
  expect_load_error(dir, with_shape("[2]", "[0,-8]"), "'data_offsets' [0,-8] must be two non-negative integers");
  expect_load_error(dir, with_shape("[2]", "[0,8.0]"), "'data_offsets' [0,8.0] must be two non-negative integers");
  // Duplicate keys: JSON readers disagree on which wins.
  expect_load_error(dir,
                    make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                              "\"a\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                              eight_floats()),
                    "header has the key 'a' twice in one object");
  expect_load_error(dir, make_file("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", ""),
                    "header has the key 'k' twice in one object");
  // Deep nesting is refused before it is built (run under ASan by the sanitize label).
  expect_load_error(dir, make_file("{\"a\":" + std::string(100000, '[') + std::string(100000, ']') + "}", ""),
                    "header nests JSON deeper than 64 levels");
  expect_load_error(dir, make_file(std::string(100000, '['), ""), "header nests JSON deeper than 64 levels");
  // Control characters in a name stay on one line.
  expect_load_error(dir,
                    make_file("{\"a\\nb\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", eight_floats()),
                    "tensor 'a\\x0ab' has unknown dtype 'F64'");
  // A header length above 100 MB is refused before allocating (a sparse file of that size).
  {
    const std::string path = dir + "/huge.safetensors";
    const uint64_t n = 200'000'000;
    std::string len(8, '\0');
    std::memcpy(len.data(), &n, 8);
    write_file(path, len + "{");
    fs::resize_file(path, 8 + n);
    try {
      load_safetensors(path);
      ADD_FAILURE() << "no error for a 200 MB header";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "checkpoint '" + path +
                                           "': header length 200000000 is above the limit of 100000000 bytes: not a "
                                           "checkpoint header");
    }
    fs::remove(path);
  }
  fs::remove_all(dir);
}

TEST(Safetensors, ForeignFilesWithoutChecksumLoad) {
  // What Python's safetensors writes: no "format"/"checksum" metadata, nothing to verify.
  const std::string dir = temp_dir("foreign");
  write_file(dir + "/f.safetensors",
             make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", eight_floats()));
  const LoadedTensors got = load_safetensors(dir + "/f.safetensors");
  EXPECT_EQ(got.find("a")->to_vector(), (std::vector<float>{1.f, 2.f}));
  EXPECT_TRUE(got.metadata.empty());
  fs::remove_all(dir);
}

TEST(Safetensors, EveryCorruptionHasItsOwnMessage) {
  const std::string dir = temp_dir("corrupt");
  const std::string good_path = dir + "/good.safetensors";
  save_safetensors(good_path, {{"a", Tensor::randn({4, 4}, 1)}, {"b", Tensor::randn({3}, 2)}});
  const std::string good = read_file(good_path);
  ASSERT_NO_THROW(load_safetensors(good_path));
  const std::string f32_2 = "{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":";

  try {
    load_safetensors(dir + "/missing.safetensors");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "cannot open checkpoint '" + dir + "/missing.safetensors': No such file or directory");
  }
  expect_load_error(dir, good.substr(0, 5), "is truncated: 5 bytes, shorter than the 8-byte header length");
  {
    std::string s = good;
    const uint64_t huge = 1 << 20;
    std::memcpy(s.data(), &huge, 8);
    expect_load_error(dir, s, "header length 1048576 is larger than the rest of the file");
  }
  {
    std::string s = good;
    s[8] = 'x';  // '{' -> 'x'
    expect_load_error(dir, s, "header is not valid JSON (error at byte 1");
  }
  expect_load_error(dir, make_file("[1, 2]", ""), "header is not a JSON object");
  expect_load_error(dir, make_file("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", eight_floats()),
                    "tensor 'a' has no 'dtype'");
  expect_load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", eight_floats()),
                    "tensor 'a' has no 'shape'");
  expect_load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", eight_floats()),
                    "tensor 'a' has no 'data_offsets'");
  expect_load_error(dir, make_file("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", eight_floats()),
                    "tensor 'a' has unknown dtype 'F64' (supported: F32, F16, BF16, I32, I64, U8)");
  expect_load_error(dir, make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", eight_floats()),
                    "tensor 'a': 'shape' [-2] must hold non-negative integers");
  expect_load_error(dir, make_file("{\"a\":" + f32_2 + "[0,12]}}", eight_floats() + "abcd"),
                    "tensor 'a': data_offsets [0, 12] hold 12 bytes but shape [2] x F32 needs 8");
  expect_load_error(dir, make_file("{\"a\":" + f32_2 + "[8,0]}}", eight_floats()),
                    "tensor 'a': data_offsets [8, 0] end before they begin");
  expect_load_error(dir, make_file("{\"a\":" + f32_2 + "[0,8]},\"b\":" + f32_2 + "[4,12]}}", eight_floats() + "abcd"),
                    "tensors 'a' and 'b' overlap (data_offsets [0, 8] and [4, 12])");
  expect_load_error(
      dir,
      make_file("{\"a\":" + f32_2 + "[0,8]},\"b\":" + f32_2 + "[12,20]}}", eight_floats() + "abcd" + eight_floats()),
      "gap of 4 bytes before tensor 'b'");
  expect_load_error(
      dir, make_file("{\"a\":" + f32_2 + "[0,8]},\"b\":" + f32_2 + "[8,16]}}", eight_floats() + "abcd"),
      "is truncated or has offsets out of range: the data section is 12 bytes but tensor 'b' ends at byte 16");
  expect_load_error(dir, good.substr(0, good.size() - 4), "is truncated or has offsets out of range");
  expect_load_error(dir, good + "junk", "has 4 unexpected bytes after the last tensor");
  expect_load_error(dir, make_file("{\"__metadata__\":{\"a\":1}}", ""), "__metadata__ value of 'a' is not a string");
  expect_load_error(dir, make_file("{\"__metadata__\":{\"format\":\"engine-checkpoint-1\"}}", ""),
                    "metadata has no 'checksum'");
  expect_load_error(dir, make_file("{\"__metadata__\":{\"format\":\"engine-checkpoint-9\"}}", ""),
                    "unknown format 'engine-checkpoint-9'");
  {
    // One flipped bit in the data section: structurally fine, caught by the checksum only.
    std::string s = good;
    s[s.size() - 3] ^= 0x10;
    expect_load_error(dir, s, "checksum mismatch");
    write_file(dir + "/flipped.safetensors", s);
    EXPECT_NO_THROW(load_safetensors(dir + "/flipped.safetensors", /*verify_checksum=*/false));
  }
  fs::remove_all(dir);
}

TEST(Safetensors, SaveIsAtomic) {
  const std::string dir = temp_dir("atomic");
  const std::string path = dir + "/model.safetensors";
  save_safetensors(path, {{"a", Tensor::randn({3}, 1)}});
  const std::string before = read_file(path);

  // A bad argument fails before anything is written.
  EXPECT_THROW(save_safetensors(path, {{"a", Tensor::randn({3}, 2)}, {"b", Tensor()}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"a", Tensor::randn({3}, 2)}, {"a", Tensor::randn({3}, 3)}}), Error);
  EXPECT_THROW(save_safetensors(path, {{"__metadata__", Tensor::randn({3}, 2)}}), Error);
  EXPECT_EQ(read_file(path), before);

  // The rename fails (the target is a directory): the temporary file is removed.
  fs::create_directories(dir + "/target_is_dir");
  try {
    save_safetensors(dir + "/target_is_dir", {{"a", Tensor::randn({3}, 2)}});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "save_safetensors: cannot replace '" + dir + "/target_is_dir': Is a directory");
  }
  // A missing directory: the error names the temporary path and the errno text.
  try {
    save_safetensors(dir + "/no/such/x.safetensors", {{"a", Tensor::randn({3}, 2)}});
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "save_safetensors: cannot create '" + dir + "/no/such/x.safetensors.tmp-" +
                                         std::to_string(::getpid()) + "': No such file or directory");
  }
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir)) names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"model.safetensors", "target_is_dir"}));  // no .tmp-* left

  // A successful save replaces the file.
  const Tensor b = Tensor::randn({3}, 5);
  save_safetensors(path, {{"a", b}});
  EXPECT_EQ(raw_bytes(*load_safetensors(path).find("a")), raw_bytes(b));
  fs::remove_all(dir);
}

TEST(Safetensors, CheckTensorsMatchMessages) {
  const std::string dir = temp_dir("match");
  const std::string path = dir + "/m.safetensors";
  save_safetensors(path, {{"w", Tensor::zeros({3, 3})},
                          {"b", Tensor::zeros({3})},
                          {"extra", Tensor::zeros({1})},
                          {"h", Tensor::zeros({2}).to(DType::F16)}});
  const LoadedTensors file = load_safetensors(path);
  const NamedTensors expected = {
      {"w", Tensor::zeros({4, 3})}, {"b", Tensor::zeros({3})}, {"h", Tensor::zeros({2})}, {"gone", Tensor::zeros({1})}};
  try {
    check_tensors_match(file, expected, "model weights");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "model weights '" + path +
                                         "' does not match: 1 missing (gone); 1 unexpected (extra); 1 shape mismatch "
                                         "(w: file [3, 3] vs expected [4, 3]); 1 dtype mismatch (h: file F16 vs "
                                         "expected F32)");
  }
  // Long lists show the first five and the count.
  NamedTensors many;
  for (int i = 0; i < 7; ++i) many.push_back({"p" + std::to_string(i), Tensor::zeros({1})});
  save_safetensors(path, {});
  try {
    check_tensors_match(load_safetensors(path), many, "optimizer state");
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "optimizer state '" + path + "' does not match: 7 missing (p0, p1, p2, p3, p4, ...)");
  }
  fs::remove_all(dir);
}
