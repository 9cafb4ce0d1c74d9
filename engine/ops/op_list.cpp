// The op list table (op_list.h) built from op_list.inc.
#include "engine/ops/op_list.h"

#include <unordered_set>

namespace engine {

const std::vector<OpInfo>& op_list() {
  static const std::vector<OpInfo> list = {
#define ENGINE_OP(name, cpu_kernel, cuda_kernel, test, bench_row) {#name, #cpu_kernel, #cuda_kernel, #test, #bench_row},
#include "engine/ops/op_list.inc"
#undef ENGINE_OP
  };
  return list;
}

bool is_listed_op(std::string_view name) {
  static const std::unordered_set<std::string_view> names = [] {
    std::unordered_set<std::string_view> s;
    for (const OpInfo& op : op_list()) s.insert(op.name);
    return s;
  }();
  return names.count(name) != 0;
}

}  // namespace engine
