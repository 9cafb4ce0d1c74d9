// Metrics log as JSON Lines: one JSON object per line, each line flushed to the OS as soon as it
// is written, so a crashed or running job's log is readable up to its last record. The trainer
// writes {"iter":..,"loss":..,"lr":..} and evaluation records; resume opens the file in append
// mode. Semantics: https://jsonlines.org (UTF-8, one value per '\n'-terminated line).
// Tested by tests/test_event_writer.cpp (JsonlWriter/read_jsonl round trip, append, bad lines).
#pragma once
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace engine::train {

class JsonlWriter {
 public:
  // append = false truncates an existing file. The parent directory must exist.
  JsonlWriter(const std::string& path, bool append);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;

  // One line; NaN/inf become null (JSON has no such numbers).
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Every line of a JSONL file parsed (empty lines skipped). An unreadable file or a line that is
// not valid JSON is an Error naming the file and the line number.
std::vector<nlohmann::json> read_jsonl(const std::string& path);

}  // namespace engine::train
