// VisualDL 2.x record files ("vdlrecords.<unix seconds>.log"), written without VisualDL or protobuf,
// so that `visualdl --logdir <save_dir>` (PaddleSeg's documented viewer for --use_vdl) shows the
// same scalars as the TensorBoard event file (train/event_writer.h) written beside it.
//
// Format, read from visualdl 2.5.3 (PyPI):
// - writer/record_writer.py: file name "vdlrecords.%010d.log" % time.time(); LogWriter writes
//   records with RecordWriter.write(): u64 little-endian length, then the serialized message. No
//   CRC (write_crc() exists but LogWriter does not use it) and no file-version record.
// - writer/writer.py: LogWriter.__init__ first writes add_meta(): the meta-data record; every time
//   stamp is round(time.time() * 1000), milliseconds.
// - proto/record_pb2.py (proto3, package visualdl): Record{repeated Value values = 1},
//   Value{int64 id = 1 (the step), string tag = 2, int64 timestamp = 3,
//   oneof one_value {float value = 4; ...; MetaData meta_data = 10; ...}}, MetaData{string
//   display_name = 1}. Fields at their proto3 default (id 0, timestamp 0) are omitted; a oneof
//   member is written even when zero.
// - reader/reader.py: a folder's newest file by name (names sorted, the last one) is the run that
//   VisualDL shows; a tag must not contain '%' (VisualDL's reader uses it in place of '/').
// Tested by tests/test_vdl_writer.cpp (a whole file byte for byte against one from VisualDL's own
// LogWriter, tests/golden/gen_vdl_golden.py); tools/check_visualdl.py reads a run with VisualDL.
#pragma once
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace engine::train {

// Serialized `Record` messages (the payloads), exposed for tests.
// Record{Value{tag = "meta_data_tag", timestamp, meta_data = MetaData{}}}: the first record of a file
// (LogWriter.add_meta() with its defaults: step 0, empty display name).
std::string encode_vdl_meta_record(int64_t timestamp_ms);
// Record{Value{id = step, tag, timestamp, value}}.
std::string encode_vdl_scalar_record(const std::string& tag, float value, int64_t step, int64_t timestamp_ms);
// u64 length (LE), then data.
std::string frame_vdl_record(const std::string& data);

// Writes "vdlrecords.<10-digit unix seconds>.log" in `dir` (created if missing). The file is
// created exclusively: if the name exists, ".1", ".2", ... is appended (such names sort after the
// plain one, so VisualDL shows the newest run). Every add_scalar is flushed to the OS.
class VdlWriter {
 public:
  explicit VdlWriter(const std::string& dir);
  // Same with an explicit clock (seconds since the epoch) for the file name and the meta record.
  VdlWriter(const std::string& dir, double start_time);
  ~VdlWriter();
  VdlWriter(const VdlWriter&) = delete;
  VdlWriter& operator=(const VdlWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Same with an explicit wall time (seconds since the epoch; stored in whole milliseconds).
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

// One record of a VisualDL file as read back (scalar and meta-data records in full; any other
// kind of record keeps its tag, step and time stamp).
struct VdlRecord {
  enum Kind { kScalar, kMeta, kOther } kind = kOther;
  std::string tag;
  int64_t step = 0;
  int64_t timestamp_ms = 0;
  float value = 0;           // kScalar
  std::string display_name;  // kMeta
};
// Reads every record of a file; an Error names the file and the byte offset of a malformed one.
std::vector<VdlRecord> read_vdl_records(const std::string& path);
// The same on a file's bytes already in memory; `name` is what errors call the file.
std::vector<VdlRecord> parse_vdl_records(const std::string& bytes, const std::string& name);

}  // namespace engine::train
