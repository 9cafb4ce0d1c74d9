// labels: sanitize
// VisualDL record files (train/vdl_writer.h): a whole file byte for byte against one written by
// VisualDL's own LogWriter (visualdl 2.5.3, made by tests/golden/gen_vdl_golden.py), the single
// encodings, a writer's file read back record by record, no clobbering of an existing file, and
// errors that name the file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "tests/harness/temp_dirs.h"
#include "train/vdl_writer.h"

using namespace engine;
using namespace engine::train;
namespace fs = std::filesystem;

namespace {

// python3 tests/golden/gen_vdl_golden.py: LogWriter with its clock at 1700000000.0 s, then its
// SCALARS (kept in step with kScalars below).
const char kGoldenName[] = "vdlrecords.1700000000.log";
const std::string kGolden = std::string(
    "\x1a\x00\x00\x00\x00\x00\x00\x00\x0a\x18\x12\x0d\x6d\x65\x74\x61\x5f\x64\x61\x74\x61\x5f\x74\x61"
    "\x67\x18\x80\xd0\x95\xff\xbc\x31\x52\x00\x1c\x00\x00\x00\x00\x00\x00\x00\x0a\x1a\x08\x0a\x12\x0a"
    "\x54\x72\x61\x69\x6e\x2f\x6c\x6f\x73\x73\x18\xfa\xd1\x95\xff\xbc\x31\x25\x00\x00\x30\x40\x1a\x00"
    "\x00\x00\x00\x00\x00\x00\x0a\x18\x08\x0a\x12\x08\x54\x72\x61\x69\x6e\x2f\x6c\x72\x18\xfb\xd1\x95"
    "\xff\xbc\x31\x25\x0a\xd7\x23\x3c\x1d\x00\x00\x00\x00\x00\x00\x00\x0a\x1b\x12\x0d\x45\x76\x61\x6c"
    "\x75\x61\x74\x65\x2f\x6d\x49\x6f\x55\x18\xe8\xd7\x95\xff\xbc\x31\x25\x00\x00\x00\x00\x23\x00\x00"
    "\x00\x00\x00\x00\x00\x0a\x21\x08\xac\x02\x12\x10\x54\x72\x61\x69\x6e\x2f\x62\x61\x74\x63\x68\x5f"
    "\x63\x6f\x73\x74\x18\xb7\xe7\x95\xff\xbc\x31\x25\xa6\x9b\xc4\xba\xb5\x00\x00\x00\x00\x00\x00\x00"
    "\x0a\xb2\x01\x08\x80\x80\x80\x80\x80\x20\x12\x9c\x01\x54\x72\x61\x69\x6e\x2f\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78\x78"
    "\x78\x18\xb8\xe7\x95\xff\xbc\x31\x25\x65\x20\xf1\x47",
    373);

struct Scalar {
  std::string tag;
  double value;
  int64_t step;
  int64_t ms;
};
const std::vector<Scalar> kScalars = {
    {"Train/loss", 2.75, 10, 1700000000250},
    {"Train/lr", 0.01, 10, 1700000000251},
    {"Evaluate/mIoU", 0.0, 0, 1700000001000},
    {"Train/batch_cost", -1.5e-3, 300, 1700000002999},
    {"Train/" + std::string(150, 'x'), 123456.789, int64_t(1) << 40, 1700000003000},
};

fs::path fresh_dir(const std::string& name) { return engine::testing::fresh_test_dir("engine_vdl_" + name); }

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(VdlEncoding, MetaRecordByteExact) {
  // The golden's first record: u64 length 26, Record{values: Value{tag: "meta_data_tag",
  // timestamp: 1700000000000, meta_data: {}}}.
  const std::string meta = frame_vdl_record(encode_vdl_meta_record(1700000000000));
  ASSERT_EQ(meta.size(), 34u);
  EXPECT_EQ(meta, kGolden.substr(0, 34));
}

TEST(VdlEncoding, ScalarRecordsByteExact) {
  size_t pos = 34;
  for (const Scalar& s : kScalars) {
    const std::string r = frame_vdl_record(encode_vdl_scalar_record(s.tag, (float)s.value, s.step, s.ms));
    ASSERT_LE(pos + r.size(), kGolden.size()) << s.tag;
    EXPECT_EQ(r, kGolden.substr(pos, r.size())) << s.tag;
    pos += r.size();
  }
  EXPECT_EQ(pos, kGolden.size());
  // Step 0 and time stamp 0 are omitted (proto3 defaults); the value is kept even at 0 (a oneof).
  const std::string zero = encode_vdl_scalar_record("t", 0.0f, 0, 0);
  EXPECT_EQ(zero, std::string("\x0a\x08\x12\x01t\x25\x00\x00\x00\x00", 10));
  // A negative step is a 10-byte varint, as protobuf writes int64.
  EXPECT_EQ(encode_vdl_scalar_record("t", 0.0f, -1, 0).size(), 10u + 11u);
}

TEST(VdlWriter, WholeFileEqualsVisualDLs) {
  const fs::path dir = fresh_dir("golden");
  std::string path;
  {
    VdlWriter w(dir.string(), 1700000000.0);
    path = w.path();
    for (const Scalar& s : kScalars) w.add_scalar(s.tag, s.value, s.step, (double)s.ms / 1000.0);
  }
  EXPECT_EQ(fs::path(path).filename().string(), kGoldenName);
  EXPECT_EQ(read_file(path), kGolden);
}

TEST(VdlWriter, GoldenReadsBack) {
  const fs::path file = fresh_dir("read") / kGoldenName;
  std::ofstream(file, std::ios::binary) << kGolden;
  const std::vector<VdlRecord> r = read_vdl_records(file.string());
  ASSERT_EQ(r.size(), kScalars.size() + 1);
  EXPECT_EQ(r[0].kind, VdlRecord::kMeta);
  EXPECT_EQ(r[0].tag, "meta_data_tag");
  EXPECT_EQ(r[0].timestamp_ms, 1700000000000);
  EXPECT_EQ(r[0].display_name, "");
  for (size_t i = 0; i < kScalars.size(); ++i) {
    EXPECT_EQ(r[i + 1].kind, VdlRecord::kScalar);
    EXPECT_EQ(r[i + 1].tag, kScalars[i].tag);
    EXPECT_EQ(r[i + 1].step, kScalars[i].step);
    EXPECT_EQ(r[i + 1].timestamp_ms, kScalars[i].ms);
    EXPECT_EQ(r[i + 1].value, (float)kScalars[i].value);
  }
}

TEST(VdlWriter, FileParsesBackAndIsFlushedPerScalar) {
  const fs::path dir = fresh_dir("events");
  std::string path;
  {
    VdlWriter w((dir / "run").string());
    path = w.path();
    w.add_scalar("Train/loss", 2.75, 10);
    w.add_scalar("Train/lr", 0.01, 10);
    w.add_scalar("Evaluate/mIoU", 0.5, 20);
    EXPECT_EQ(read_vdl_records(path).size(), 4u);  // visible before the writer is closed
  }
  // "vdlrecords.<10-digit unix time>.log" in the folder asked for
  const std::string name = fs::path(path).filename().string();
  ASSERT_EQ(name.size(), std::string("vdlrecords.0123456789.log").size()) << name;
  EXPECT_EQ(name.substr(0, 11), "vdlrecords.");
  for (size_t i = 11; i < 21; ++i) EXPECT_TRUE(std::isdigit((unsigned char)name[i])) << name;
  EXPECT_EQ(name.substr(21), ".log");
  EXPECT_EQ(fs::path(path).parent_path(), dir / "run");

  const std::vector<VdlRecord> r = read_vdl_records(path);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].kind, VdlRecord::kMeta);
  EXPECT_GT(r[0].timestamp_ms, 1600000000000);
  // the name's whole seconds and the meta record's rounded milliseconds come from one clock reading
  EXPECT_LE(std::llabs(std::stoll(name.substr(11, 10)) * 1000 - r[0].timestamp_ms), 1000) << name;
  const char* tags[] = {"Train/loss", "Train/lr", "Evaluate/mIoU"};
  const int64_t steps[] = {10, 10, 20};
  const float values[] = {2.75f, 0.01f, 0.5f};
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r[i + 1].kind, VdlRecord::kScalar);
    EXPECT_EQ(r[i + 1].tag, tags[i]);
    EXPECT_EQ(r[i + 1].step, steps[i]);
    EXPECT_EQ(r[i + 1].value, values[i]);
    EXPECT_GE(r[i + 1].timestamp_ms, r[i].timestamp_ms);
  }
}

TEST(VdlWriter, ExistingFileIsNeverClobbered) {
  const fs::path dir = fresh_dir("clobber");
  const fs::path old = dir / kGoldenName;
  std::ofstream(old, std::ios::binary) << "an earlier run";
  std::string a, b;
  {
    VdlWriter w1(dir.string(), 1700000000.5), w2(dir.string(), 1700000000.0);
    a = w1.path();
    b = w2.path();
  }
  EXPECT_EQ(read_file(old), "an earlier run");
  EXPECT_EQ(a, old.string() + ".1");
  EXPECT_EQ(b, old.string() + ".2");
  // VisualDL shows the folder's file whose name sorts last: the newest one.
  EXPECT_LT(old.string(), a);
  EXPECT_LT(a, b);
  EXPECT_EQ(read_vdl_records(b).size(), 1u);

  // Two writers on the live clock in one folder never share a file.
  VdlWriter c(dir.string()), d(dir.string());
  EXPECT_NE(c.path(), d.path());
}

TEST(VdlWriter, ErrorsNameTheFile) {
  const fs::path dir = fresh_dir("errors");
  std::ofstream(dir / "file") << "x";
  const std::string sub = (dir / "file" / "sub").string();
  EXPECT_NE(error_of([&] { VdlWriter w(sub); }).find("VdlWriter: cannot create directory '" + sub + "': "),
            std::string::npos)
      << error_of([&] { VdlWriter w(sub); });
  // A folder that exists but takes no new file (a read-only folder; root ignores modes, /proc does not).
  std::string ro = "/proc/self";
  if (::geteuid() != 0) {
    ro = (dir / "ro").string();
    fs::create_directories(ro);
    ::chmod(ro.c_str(), 0555);
  }
  const std::string e = error_of([&] { VdlWriter w(ro, 1700000000.0); });
  EXPECT_EQ(e.rfind("VdlWriter: cannot create '" + ro + "/" + kGoldenName + "': ", 0), 0u) << e;
  EXPECT_EQ(e.find('\n'), std::string::npos) << e;
  if (ro != "/proc/self") ::chmod(ro.c_str(), 0755);

  VdlWriter w((dir / "tags").string());
  EXPECT_NE(error_of([&] { w.add_scalar("Train/a%b", 1, 1); }).find("'Train/a%b' contains '%'"), std::string::npos);
}

TEST(VdlWriter, ReaderNamesFileAndOffsetOfADamagedRecord) {
  const fs::path dir = fresh_dir("damaged");
  const fs::path cut = dir / "cut.log";
  std::ofstream(cut, std::ios::binary) << kGolden.substr(0, kGolden.size() - 3);
  const std::string e = error_of([&] { read_vdl_records(cut.string()); });
  EXPECT_NE(e.find("'" + cut.string() + "': record at byte 184: length 181 runs past the end"), std::string::npos) << e;
  const fs::path junk = dir / "junk.log";
  std::ofstream(junk, std::ios::binary) << kGolden.substr(0, 34)
                                        << std::string("\x02\x00\x00\x00\x00\x00\x00\x00\x08\x01", 10);
  const std::string j = error_of([&] { read_vdl_records(junk.string()); });
  EXPECT_NE(j.find("'" + junk.string() + "': record at byte 34: no Record.values"), std::string::npos) << j;
  EXPECT_NE(error_of([&] { read_vdl_records((dir / "missing.log").string()); }).find("cannot open '"),
            std::string::npos);
}

TEST(VdlWriter, ReaderSurvivesEveryCutAndFlippedByte) {
  // Damaged files (a crash mid-record, a bad disk) give an Error or records, never a crash (run under ASan).
  auto parse = [](const std::string& bytes) {
    try {
      parse_vdl_records(bytes, "f.log");
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()).rfind("read_vdl_records: 'f.log': record at byte ", 0), 0u) << e.what();
    }
  };
  for (size_t n = 0; n < kGolden.size(); ++n) parse(kGolden.substr(0, n));
  for (size_t i = 0; i < kGolden.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      std::string s = kGolden;
      s[i] = (char)(s[i] ^ (1 << bit));
      parse(s);
    }
}
