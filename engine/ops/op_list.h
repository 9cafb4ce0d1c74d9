// The one list of ops (engine/ops/op_list.inc): each dispatch name with its CPU and CUDA kernels,
// its test file and its bench_kernels row. profiler::Scope refuses a dispatch under a name that is
// not listed, so an op cannot reach a kernel without an entry; tests/test_op_list.cpp checks every
// entry against the sources.
#pragma once
#include <string_view>
#include <vector>

namespace engine {

struct OpInfo {
  const char* name;         // the ENGINE_DISPATCH name, as the profiler shows it
  const char* cpu_kernel;   // function in kernels/cpu/
  const char* cuda_kernel;  // function in kernels/cuda/, kernels/cudnn/ or kernels/cublas/
  const char* test;         // tests/<test>.cpp
  const char* bench_row;    // "family/kernel" of bench_kernels
};

const std::vector<OpInfo>& op_list();
bool is_listed_op(std::string_view name);

}  // namespace engine
