// Reading the archives Paddle's model zoos publish weights in (e.g. PaddleSeg's PP_STDCNet2.tar.gz
// holds PP_STDCNet2/model.pdparams): a tar file, optionally gzip-compressed (.tar.gz / .tgz, detected
// by content), held in memory. Tar: POSIX ustar headers (name + prefix), GNU long names (type 'L')
// and pax extended headers (type 'x': path, size) as Python's tarfile and GNU tar write them
// (formats: POSIX.1-2001 pax, GNU tar manual "Basic Tar Format"). Only regular files are listed.
// gzip: zlib's inflate with gzip decoding (RFC 1952), several concatenated members allowed.
// Every problem is an engine::Error of one line naming the archive (and the member).
// Tested by tests/test_pdparams.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace engine::train {

struct TarMember {
  std::string name;     // path inside the archive, e.g. "PP_STDCNet2/model.pdparams"
  uint64_t offset = 0;  // of its bytes within the (decompressed) archive
  uint64_t size = 0;
};

class TarArchive {
 public:
  // Reads `path` (a tar, or a gzip-compressed tar) and indexes its members.
  static TarArchive open(const std::string& path);
  // Indexes an archive already in memory (decompressed when it starts with the gzip magic).
  static TarArchive from_bytes(std::string bytes, const std::string& source);

  const std::string& source() const { return source_; }
  const std::vector<TarMember>& members() const { return members_; }  // regular files, archive order
  // A member's bytes; Error naming the archive when there is no such member.
  std::string read(const std::string& member) const;
  const char* data(const TarMember& m) const { return bytes_.data() + m.offset; }

  // The one regular-file member whose name ends in `suffix` (macOS "._" metadata files left aside).
  // None or several: an Error listing the members.
  const TarMember& single_with_suffix(const std::string& suffix) const;

 private:
  std::string source_;
  std::string bytes_;
  std::vector<TarMember> members_;
};

bool is_gzip(const char* data, size_t size);         // starts with 1f 8b
bool looks_like_tar(const char* data, size_t size);  // a first header with a valid checksum
// Decompresses a whole gzip file (all members). Errors name `source`: corrupt or truncated data.
std::string gunzip(const char* data, size_t size, const std::string& source);
// A whole file's bytes; Error "<path>: cannot open" / "<path>: read error".
std::string read_file_bytes(const std::string& path);

}  // namespace engine::train
