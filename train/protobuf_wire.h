// The few pieces of the protobuf wire format (protobuf.dev/programming-guides/encoding) that the
// event writers need to serialise their messages by hand: varints, field keys, fixed-width scalars,
// length-delimited fields. Used by train/event_writer.cpp (TensorBoard) and train/vdl_writer.cpp
// (VisualDL); tested through tests/test_event_writer.cpp and tests/test_vdl_writer.cpp, which decode
// what the writers produce.
#pragma once
#include <bit>
#include <cstdint>
#include <cstring>
#include <string>

namespace engine::train::protobuf {

static_assert(std::endian::native == std::endian::little, "fixed-width fields are written little-endian");

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

inline void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

inline void put_key(std::string& out, uint32_t field, WireType w) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | w);
}

// A fixed32 / fixed64 / float / double payload (the key is the caller's).
template <class T>
void put_fixed(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

inline void put_bytes(std::string& out, uint32_t field, const std::string& s) {
  put_key(out, field, kLengthDelimited);
  put_varint(out, s.size());
  out += s;
}

// proto3 int64: omitted at 0; a negative value takes 10 bytes (two's complement).
inline void put_int64(std::string& out, uint32_t field, int64_t v) {
  if (v == 0) return;
  put_key(out, field, kVarint);
  put_varint(out, static_cast<uint64_t>(v));
}

}  // namespace engine::train::protobuf
