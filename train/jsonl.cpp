// JSON Lines metrics log; see jsonl.h. Tested by tests/test_event_writer.cpp.
#include "train/jsonl.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "base/error.h"

namespace engine::train {

JsonlWriter::JsonlWriter(const std::string& path, bool append) : path_(path) {
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  ENGINE_CHECK(file_ != nullptr, "JsonlWriter: cannot open '", path, "' for ", append ? "appending" : "writing", ": ",
               std::strerror(errno));
}

JsonlWriter::~JsonlWriter() {
  if (file_) std::fclose(file_);
}

void JsonlWriter::write(const nlohmann::json& record) {
  // replace: a non-UTF-8 string (e.g. a file name) must not make the log unwritable.
  const std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  ENGINE_CHECK(std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0,
               "JsonlWriter: cannot write '", path_, "': ", std::strerror(errno));
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ENGINE_CHECK(in.good(), "read_jsonl: cannot open '", path, "': ", std::strerror(errno));
  std::vector<nlohmann::json> out;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    ENGINE_CHECK(!j.is_discarded(), "read_jsonl: '", path, "' line ", n, " is not valid JSON");
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace engine::train
