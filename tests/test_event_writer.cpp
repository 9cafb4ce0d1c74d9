// labels: sanitize
// Training logs: CRC-32C (known vectors, table vs SSE4.2 path), the TFRecord framing and the
// hand-encoded TensorBoard Event protobufs (byte-exact expectations built here from the wire
// rules), an EventWriter file parsed back by a small reader written in this test, and the JSONL
// metrics log (train/jsonl.h). The encodings were also parsed once with tensorboard 2.21's
// event_pb2 and re-serialized by protobuf byte for byte identical, and tools/check_tensorboard.py
// read a file from this writer with TensorBoard's EventAccumulator.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/error.h"
#include "train/event_writer.h"
#include "train/jsonl.h"

using namespace engine;
using namespace engine::train;
namespace fs = std::filesystem;

namespace {

std::string bytes(std::initializer_list<int> b) {
  std::string s;
  for (int x : b) s.push_back((char)x);
  return s;
}
template <class T>
std::string le(T v) {
  std::string s(sizeof(T), '\0');
  std::memcpy(s.data(), &v, sizeof(T));
  return s;
}

std::string temp_dir(const std::string& tag) {
  const fs::path p = fs::temp_directory_path() / ("engine_test_" + tag + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---- a minimal reader: TFRecord framing + protobuf wire format (only what the writer emits)
struct Reader {
  const std::string& s;
  size_t pos = 0;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      EXPECT_LT(pos, s.size());
      const uint8_t b = (uint8_t)s[pos++];
      v |= (uint64_t)(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  template <class T>
  T fixed() {
    T v;
    std::memcpy(&v, s.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
  std::string chunk(size_t n) {
    std::string c = s.substr(pos, n);
    pos += n;
    return c;
  }
};

struct ParsedEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version, tag;
  float value = NAN;
};

ParsedEvent parse_event(const std::string& data) {
  ParsedEvent e;
  Reader r{data};
  while (r.pos < data.size()) {
    const uint64_t key = r.varint();
    switch (key) {
      case (1 << 3) | 1:
        e.wall_time = r.fixed<double>();
        break;
      case (2 << 3) | 0:
        e.step = (int64_t)r.varint();
        break;
      case (3 << 3) | 2:
        e.file_version = r.chunk(r.varint());
        break;
      case (5 << 3) | 2: {
        const std::string summary = r.chunk(r.varint());
        Reader rs{summary};
        EXPECT_EQ(rs.varint(), (1u << 3) | 2);  // Summary.value
        const std::string value = rs.chunk(rs.varint());
        EXPECT_EQ(rs.pos, summary.size());
        Reader rv{value};
        EXPECT_EQ(rv.varint(), (1u << 3) | 2);  // Value.tag
        e.tag = rv.chunk(rv.varint());
        EXPECT_EQ(rv.varint(), (2u << 3) | 5);  // Value.simple_value
        e.value = rv.fixed<float>();
        EXPECT_EQ(rv.pos, value.size());
        break;
      }
      default:
        ADD_FAILURE() << "unexpected protobuf key " << key;
        return e;
    }
  }
  return e;
}

// Splits a file into records, checking both masked CRCs of each.
std::vector<std::string> read_records(const std::string& file) {
  std::vector<std::string> out;
  Reader r{file};
  while (r.pos < file.size()) {
    EXPECT_LE(r.pos + 12, file.size());
    const std::string len_bytes = file.substr(r.pos, 8);
    const uint64_t len = r.fixed<uint64_t>();
    EXPECT_EQ(r.fixed<uint32_t>(), masked_crc32c(len_bytes.data(), 8));
    EXPECT_LE(r.pos + len + 4, file.size());
    out.push_back(r.chunk(len));
    EXPECT_EQ(r.fixed<uint32_t>(), masked_crc32c(out.back().data(), out.back().size()));
  }
  return out;
}

}  // namespace

// ------------------------------------------------------------------ CRC-32C
TEST(Crc32c, KnownVectors) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c("", 0), 0u);
  // RFC 3720 (iSCSI) appendix B.4 test patterns.
  const std::string zeros(32, '\0'), ones(32, '\xff');
  std::string inc;
  for (int i = 0; i < 32; ++i) inc.push_back((char)i);
  EXPECT_EQ(crc32c(zeros.data(), 32), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones.data(), 32), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc.data(), 32), 0x46DD794Eu);
  EXPECT_EQ(crc32c_portable("123456789", 9), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(inc.data(), 32), 0x46DD794Eu);
}

TEST(Crc32c, ChainingAndBothPathsAgree) {
  std::mt19937 rng(3);
  std::string buf(4096 + 13, '\0');
  for (char& c : buf) c = (char)rng();
  for (size_t off : {0, 1, 3, 7}) {
    for (size_t n : {0, 1, 7, 8, 9, 15, 16, 63, 64, 100, 4096}) {
      const char* p = buf.data() + off;
      const uint32_t whole = crc32c(p, n);
      EXPECT_EQ(whole, crc32c_portable(p, n)) << "offset " << off << " length " << n;
      for (size_t cut : {(size_t)0, n / 3, n})
        EXPECT_EQ(crc32c(p + cut, n - cut, crc32c(p, cut)), whole) << "cut " << cut;
    }
  }
}

TEST(Crc32c, Masked) {
  // ((0xE3069283 >> 15) | (0xE3069283 << 17)) + 0xa282ead8 mod 2^32
  const uint32_t c = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((c >> 15) | (c << 17)) + 0xa282ead8u);
  EXPECT_EQ(masked_crc32c("123456789", 9), 0xC78AB0E5u);
}

// ------------------------------------------------------------------ protobuf encodings
TEST(EventEncoding, FileVersionEventByteExact) {
  // Event{wall_time (1, fixed64) = 1.5, file_version (3, length-delimited) = "brain.Event:2"}
  const std::string expect = bytes({0x09}) + le(1.5) + bytes({0x1a, 13}) + "brain.Event:2";
  EXPECT_EQ(encode_file_version_event(1.5), expect);
}

TEST(EventEncoding, ScalarEventByteExact) {
  // Value{tag (1) = "loss", simple_value (2, fixed32) = 0.25f}: 0a 04 "loss" 15 <0.25f> = 11 bytes
  const std::string value = bytes({0x0a, 4}) + "loss" + bytes({0x15, 0x00, 0x00, 0x80, 0x3e});
  ASSERT_EQ(value.size(), 11u);
  const std::string summary = bytes({0x0a, 11}) + value;  // Summary{value (1)}
  // Event{wall_time (1) = 1.5, step (2, varint) = 7, summary (5) = 13 bytes}
  const std::string expect = bytes({0x09}) + le(1.5) + bytes({0x10, 7, 0x2a, 13}) + summary;
  EXPECT_EQ(encode_scalar_event(1.5, 7, "loss", 0.25f), expect);

  // step 0 is the proto3 default and is omitted.
  EXPECT_EQ(encode_scalar_event(1.5, 0, "loss", 0.25f), bytes({0x09}) + le(1.5) + bytes({0x2a, 13}) + summary);
  // step 300 = 0b10_0101100 -> varint ac 02
  EXPECT_EQ(encode_scalar_event(1.5, 300, "loss", 0.25f).substr(9, 3), bytes({0x10, 0xac, 0x02}));
  // negative int64 steps take ten varint bytes (two's complement)
  EXPECT_EQ(encode_scalar_event(1.5, -1, "loss", 0.25f).substr(9, 11),
            bytes({0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
}

TEST(EventEncoding, LongTagUsesMultiByteLengths) {
  const std::string tag(200, 'a');  // Value = 3 + 200 + 5 = 208 bytes; Summary = 1 + 2 + 208 = 211
  const std::string e = encode_scalar_event(2.0, 1, tag, -1.f);
  const std::string head =
      bytes({0x09}) + le(2.0) + bytes({0x10, 1, 0x2a, 0xd3, 0x01, 0x0a, 0xd0, 0x01, 0x0a, 0xc8, 0x01});
  EXPECT_EQ(e.substr(0, head.size()), head);
  EXPECT_EQ(e.size(), head.size() + 200 + 5);
  EXPECT_EQ(e.substr(e.size() - 5), bytes({0x15}) + le(-1.f));
}

TEST(EventEncoding, RecordFraming) {
  const std::string r = frame_record("abc");
  const std::string expect = le<uint64_t>(3) + le<uint32_t>(0x0e4999b0u) + "abc" + le<uint32_t>(0x21f1576eu);
  EXPECT_EQ(r, expect);
}

// ------------------------------------------------------------------ EventWriter
TEST(EventWriter, FileParsesBack) {
  const std::string dir = temp_dir("events");
  std::string path;
  {
    EventWriter w(dir + "/run");
    path = w.path();
    w.add_scalar("Train/loss", 2.75, 10);
    w.add_scalar("Train/lr", 0.01, 10, 1700000000.25);
    w.add_scalar("Evaluate/mIoU", 0.5, 20);
    // visible before the writer is closed (flushed per add)
    EXPECT_EQ(read_records(read_file(path)).size(), 4u);
  }
  char host[256] = {0};
  ASSERT_EQ(gethostname(host, sizeof(host) - 1), 0);
  const std::string name = fs::path(path).filename().string();
  // "events.out.tfevents.<10-digit unix time>.<host>" (no std::regex: GCC 12 warns inside it under ASan)
  const std::string prefix = "events.out.tfevents.";
  ASSERT_EQ(name.rfind(prefix, 0), 0u) << name;
  ASSERT_GT(name.size(), prefix.size() + 11) << name;
  for (size_t i = 0; i < 10; ++i) EXPECT_TRUE(std::isdigit((unsigned char)name[prefix.size() + i])) << name;
  EXPECT_EQ(name[prefix.size() + 10], '.') << name;
  EXPECT_EQ(name.substr(name.size() - std::strlen(host)), host);
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(dir + "/run"));

  const std::vector<std::string> recs = read_records(read_file(path));
  ASSERT_EQ(recs.size(), 4u);
  const ParsedEvent first = parse_event(recs[0]);
  EXPECT_EQ(first.file_version, "brain.Event:2");
  EXPECT_GT(first.wall_time, 1.6e9);
  const ParsedEvent a = parse_event(recs[1]), b = parse_event(recs[2]), c = parse_event(recs[3]);
  EXPECT_EQ(a.tag, "Train/loss");
  EXPECT_EQ(a.value, 2.75f);
  EXPECT_EQ(a.step, 10);
  EXPECT_GE(a.wall_time, first.wall_time);
  EXPECT_EQ(b.tag, "Train/lr");
  EXPECT_EQ(b.value, 0.01f);
  EXPECT_EQ(b.wall_time, 1700000000.25);
  EXPECT_EQ(c.tag, "Evaluate/mIoU");
  EXPECT_EQ(c.step, 20);
  EXPECT_EQ(c.value, 0.5f);
  fs::remove_all(dir);
}

TEST(EventWriter, SecondWriterInSameSecondGetsItsOwnFile) {
  const std::string dir = temp_dir("events2");
  EventWriter a(dir), b(dir);
  EXPECT_NE(a.path(), b.path());
  a.add_scalar("x", 1, 1);
  b.add_scalar("x", 2, 2);
  EXPECT_EQ(read_records(read_file(a.path())).size(), 2u);
  EXPECT_EQ(read_records(read_file(b.path())).size(), 2u);
  fs::remove_all(dir);
}

TEST(EventWriter, UncreatableDirectoryIsAClearError) {
  const std::string dir = temp_dir("events3");
  std::ofstream(dir + "/file") << "x";
  try {
    EventWriter w(dir + "/file/sub");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("EventWriter: cannot create directory '" + dir + "/file/sub'"),
              std::string::npos)
        << e.what();
  }
  fs::remove_all(dir);
}

// ------------------------------------------------------------------ JSONL
TEST(Jsonl, WriteAppendAndReadBack) {
  const std::string dir = temp_dir("jsonl");
  const std::string path = dir + "/metrics.jsonl";
  {
    JsonlWriter w(path, false);
    w.write({{"iter", 10}, {"loss", 2.5}, {"lr", 0.01}});
    w.write({{"iter", 20}, {"loss", NAN}});
    // flushed per line: readable while the writer is open
    EXPECT_EQ(read_file(path), "{\"iter\":10,\"loss\":2.5,\"lr\":0.01}\n{\"iter\":20,\"loss\":null}\n");
  }
  {
    JsonlWriter w(path, true);  // resume appends
    w.write({{"iter", 30}, {"mIoU", 0.25}});
  }
  const auto recs = read_jsonl(path);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_EQ(recs[0]["lr"].get<double>(), 0.01);
  EXPECT_TRUE(recs[1]["loss"].is_null());
  EXPECT_EQ(recs[2]["iter"].get<int>(), 30);
  {
    JsonlWriter w(path, false);  // a fresh run truncates
    w.write({{"iter", 1}});
  }
  EXPECT_EQ(read_jsonl(path).size(), 1u);
  fs::remove_all(dir);
}

TEST(Jsonl, ErrorsNameFileAndLine) {
  const std::string dir = temp_dir("jsonl2");
  std::ofstream(dir + "/bad.jsonl") << "{\"a\":1}\n\n{\"a\":\n";
  try {
    read_jsonl(dir + "/bad.jsonl");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "read_jsonl: '" + dir + "/bad.jsonl' line 3 is not valid JSON");
  }
  try {
    JsonlWriter w(dir + "/no/such/dir.jsonl", true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "JsonlWriter: cannot open '" + dir + "/no/such/dir.jsonl' for appending: No such file or directory");
  }
  EXPECT_THROW(read_jsonl(dir + "/missing.jsonl"), Error);
  fs::remove_all(dir);
}
