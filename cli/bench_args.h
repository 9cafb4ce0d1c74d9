// Flag values for the benchmark programs (bench_train, bench_data): one-line errors naming the flag.
#pragma once
#include <cstdlib>
#include <string>

#include "base/error.h"

namespace engine::bench_args {

// The value after flag argv[*i] (advancing *i), or an error naming the flag.
inline std::string value(int argc, char** argv, int* i) {
  if (*i + 1 >= argc) fail(argv[*i], ": missing value");
  ++*i;
  return argv[*i];
}

// A positive integer value of a flag.
inline int positive_int(int argc, char** argv, int* i) {
  const std::string flag = argv[*i], v = value(argc, argv, i);
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end || x < 1 || x > 1 << 30) fail(flag, ": expected a positive integer, got '", v, "'");
  return (int)x;
}

}  // namespace engine::bench_args
