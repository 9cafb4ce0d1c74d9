// TensorBoard event files written without TensorFlow or protobuf: the TFRecord framing and the few
// fields of tensorflow's `Event` / `Summary` messages that scalar logging needs, encoded by hand
// from the protobuf wire rules. Also CRC-32C (Castagnoli), which the TFRecord framing uses and the
// checkpoint checksum (train/safetensors.h) reuses.
//
// Semantics source: tensorflow/core/util/event.proto, summary.proto, TFRecord format
// (record = u64 length, u32 masked crc32c(length), data, u32 masked crc32c(data)); PaddleSeg's
// `--use_vdl` tag names (Train/loss, Train/lr, Evaluate/mIoU, ..., paddleseg/core/train.py) are chosen
// by the callers. Tested by tests/test_event_writer.cpp (CRC vectors, byte-exact encodings, a
// reader that parses files back); tools/check_tensorboard.py reads a run with tensorboard itself.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace engine::train {

// CRC-32C (Castagnoli polynomial 0x1EDC6F41, reflected 0x82F63B78), zlib-style chaining:
// crc32c(b, nb, crc32c(a, na)) == crc32c(a || b). crc32c("123456789") == 0xE3069283.
// Uses the SSE4.2 crc32 instruction when the build targets it, else a slicing-by-8 table.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);
// The table version alone (what crc32c uses without SSE4.2); tests compare the two.
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);
// TFRecord's masked CRC: ((crc >> 15) | (crc << 17)) + 0xa282ead8 (mod 2^32).
uint32_t masked_crc32c(const void* data, size_t n);

// Serialized `Event` messages (the record payloads), exposed for tests.
// Event{wall_time = 1, file_version = 3: "brain.Event:2"}: the first record of every file.
std::string encode_file_version_event(double wall_time);
// Event{wall_time = 1, step = 2, summary = 5: Summary{value = 1: Value{tag = 1, simple_value = 2}}}.
// Fields equal to their proto3 default (step 0) are omitted, as protobuf serializers do.
std::string encode_scalar_event(double wall_time, int64_t step, const std::string& tag, float value);
// One TFRecord: u64 length (LE), u32 masked crc of the 8 length bytes, data, u32 masked crc of data.
std::string frame_record(const std::string& data);

// Writes "events.out.tfevents.<unix seconds>.<hostname>" in `dir` (created if missing; if that
// name already exists, ".1", ".2", ... is appended so an earlier run's file is never truncated —
// TensorBoard reads every file whose name contains "tfevents"). Every add_scalar is flushed to
// the OS so a crash loses nothing and a running TensorBoard sees values at once.
class EventWriter {
 public:
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Same with an explicit wall time (seconds since the epoch).
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time);
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& data);
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace engine::train
