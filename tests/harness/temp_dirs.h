// Folders of a test program under the system temp directory that do not outlive it (checkpoints of
// the training tests are hundreds of MB): fresh_test_dir() first removes the folders earlier tests
// asked for (the tests of one program run one after another; a test's own folders stay while it runs),
// and whatever is left is removed when the program exits; shared_test_dir() is for data every test of the program
// reads, removed at exit only. Names carry the pid, so parallel test programs never share a folder.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

namespace engine::testing {

class TempDirs {
 public:
  static TempDirs& instance() {
    static TempDirs dirs;
    return dirs;
  }
  std::filesystem::path fresh(const std::string& name) {
    const std::string test = current_test();
    if (test != owner_) {
      for (const auto& d : per_test_) remove(d);
      per_test_.clear();
      owner_ = test;
    }
    const std::filesystem::path d = path(name);
    remove(d);
    std::filesystem::create_directories(d);
    per_test_.push_back(d);
    return d;
  }
  std::filesystem::path shared(const std::string& name) {
    const std::filesystem::path d = path(name);
    remove(d);
    shared_.push_back(d);
    return d;
  }
  ~TempDirs() {
    for (const auto& d : per_test_) remove(d);
    for (const auto& d : shared_) remove(d);
  }

 private:
  static std::filesystem::path path(const std::string& name) {
    return std::filesystem::temp_directory_path() / (name + "_" + std::to_string(::getpid()));
  }
  static void remove(const std::filesystem::path& d) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
  static std::string current_test() {
    const ::testing::TestInfo* t = ::testing::UnitTest::GetInstance()->current_test_info();
    return t ? std::string(t->test_suite_name()) + "." + t->name() : std::string();
  }
  std::vector<std::filesystem::path> per_test_, shared_;
  std::string owner_;  // the test that asked for per_test_
};

// `name` + "_<pid>", empty, for the current test.
inline std::filesystem::path fresh_test_dir(const std::string& name) { return TempDirs::instance().fresh(name); }
// `name` + "_<pid>", not created, removed at exit.
inline std::filesystem::path shared_test_dir(const std::string& name) { return TempDirs::instance().shared(name); }

}  // namespace engine::testing
