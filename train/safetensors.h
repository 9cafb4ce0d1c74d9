// Checkpoints in the safetensors layout (docs/TRAINING.md), readable by Python's `safetensors` package:
//   u64 little-endian N | N bytes of JSON header, padded with spaces to a multiple of 8 |
//   data section: the tensors' raw little-endian bytes, packed in the order written, no gaps.
//   header = {"<name>": {"dtype": "F32"|"F16"|"BF16"|"I32"|"I64"|"U8", "shape": [...],
//             "data_offsets": [begin, end]}, ..., "__metadata__": {string: string}}
//   (offsets relative to the data section; header keys sorted by name).
// Our files add metadata["format"] = "engine-checkpoint-2" and metadata["checksum"] =
// "crc32c:xxxxxxxx" (8 lowercase hex digits): the CRC-32C (Castagnoli, crc32c() of
// train/event_writer.h, chained) over the bytes of a canonical encoding of the header followed by
// the whole data section, so that a bit flip in the data and any change of a tensor's name, dtype,
// shape or offsets or of a metadata value (e.g. two tensors' data_offsets swapped, "iter" edited)
// is refused even when the file stays structurally valid. Canonical encoding (integers u64
// little-endian; a string = u64 byte length + its UTF-8 bytes, as decoded from the JSON):
//   u64 number of tensors;
//   per tensor, ordered by (begin, end, name byte-wise) — the order written, except that empty
//   tensors sharing an offset are ordered by name:
//     string name, string dtype ("F32", ...), u64 ndim, ndim x u64 dims, u64 begin, u64 end;
//   u64 number of metadata entries except the key "checksum";
//   per such entry in byte-wise ascending key order: string key, string value.
// Files of format "engine-checkpoint-1" (earlier builds) still load: their checksum is the CRC-32C
// of the data section alone. Other "format" values are refused; files without the format key
// (written by other tools) load without a checksum (a "checksum" without "format" is checked as
// format 1). tools/read_checkpoint.py implements the same definitions.
// Writes are atomic: "<path>.tmp-<pid>" is written and fsync'd, renamed over `path`, and the
// directory fsync'd; on any error `path` is untouched and the temporary file removed.
// Semantics source: https://github.com/huggingface/safetensors (format description in its README).
// Tested by tests/test_safetensors.cpp (round trips of every dtype, byte layout and checksum
// bytes, one test per corruption incl. header edits that keep the file valid, format-1 files,
// atomic replacement, check_tensors_match messages) and tests/test_checkpoint_fuzz.cpp (a few
// hundred mutated files: each loads unchanged or gives an Error naming the file);
// tools/read_checkpoint.py reads the files from Python.
#pragma once
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "engine/tensor.h"

namespace engine::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Tensors may live on any device, have any dtype and be non-contiguous; each is stored as its own
// dtype in row-major order. Names must be unique, non-empty and not "__metadata__". The keys
// "format" and "checksum" of `metadata` are set here (values given by the caller are replaced).
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      std::map<std::string, std::string> metadata = {});

struct LoadedTensors {
  std::string path;      // for messages
  NamedTensors tensors;  // CPU tensors, in the canonical order above (= the order written)
  std::map<std::string, std::string> metadata;
  const Tensor* find(const std::string& name) const;  // nullptr when absent
};

// Reads and validates a whole file. Any problem is an Error of one line naming the file and what
// is wrong (missing file, too short, header length past the end or above 100 MB, invalid JSON
// incl. numbers out of range, nesting deeper than 64 or duplicate keys, an entry without
// dtype/shape/data_offsets, unknown dtype, a shape that is not a list of non-negative integers or
// whose size overflows, offsets out of range / overlapping / with gaps / not matching
// shape x dtype size, a data section longer or shorter than the tensors, unknown format, checksum
// mismatch). Names and values quoted in messages have control characters escaped and are cut
// after 200 bytes. verify_checksum = false skips only the CRC (e.g. to inspect a damaged file). Files
// without our "format" key (written by other tools) have no checksum to verify.
LoadedTensors load_safetensors(const std::string& path, bool verify_checksum = true);

// Throws one line when `file` does not hold exactly the names, shapes and dtypes of `expected`:
// "<what> 'path' does not match: 2 missing (a, b), 1 unexpected (c), 1 shape mismatch (w: file
// [3, 3] vs expected [4, 3])". At most 5 names are listed per kind, with the total count.
void check_tensors_match(const LoadedTensors& file, const NamedTensors& expected, const std::string& what);

// "F32", "BF16", ... (the safetensors dtype names).
const char* safetensors_dtype_name(DType t);

}  // namespace engine::train
