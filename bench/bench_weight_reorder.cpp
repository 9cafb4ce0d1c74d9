// bench_kernels rows for the convolution's weight-gradient reorder on the CPU (kernels/cpu/
// weight_reorder_cpu.h): a blocked f32 weight gradient, in the layout oneDNN's backward-weights
// primitive picks on this CPU (bf16 primitives where the CPU has them, else f32), back to OIHW, at
// PP-LiteSeg-B's largest layers; the engine's kernel ("weight_gradient_reorder") and oneDNN's own
// reorder on the same buffers ("weight_gradient_reorder_onednn"). Bytes = 8 per weight (one f32
// read, one written). Validation: the two results are the same bits. The buffers stay in cache from
// call to call, where in training the source was just written by the primitive: the rows compare
// the two kernels, the step's share is measured by bench_train.
#include <cstring>
#include <dnnl.hpp>
#include <string>
#include <vector>

#include "bench/bench.h"
#include "kernels/cpu/weight_reorder_cpu.h"

namespace {

using namespace engine;
using dnnl::memory;

// The diff-weights layout of a backward-weights primitive for a 3x3 (or 1x1) stride-1 layer.
memory::desc gradient_layout(dnnl::engine& eng, int64_t cout, int64_t cin, int64_t k, int64_t hw) {
  for (memory::data_type in : {memory::data_type::bf16, memory::data_type::f32}) {
    try {
      const int64_t pad = k / 2;
      const memory::desc src({4, cin, hw, hw}, in, memory::format_tag::nhwc);
      const memory::desc dst({4, cout, hw, hw}, in, memory::format_tag::nhwc);
      const memory::desc w_any({cout, cin, k, k}, in, memory::format_tag::any);
      const memory::desc dw_any({cout, cin, k, k}, memory::data_type::f32, memory::format_tag::any);
      const memory::dims one = {1, 1}, pads = {pad, pad};
      dnnl::convolution_forward::primitive_desc fpd(
          dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct, src,
                                          w_any, dst, one, pads, pads),
          eng);
      dnnl::convolution_backward_weights::primitive_desc bpd(
          dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src, dw_any, dst, one, pads,
                                                   pads),
          eng, fpd);
      return bpd.diff_weights_desc();
    } catch (const dnnl::error&) {
      // no bf16 convolution on this CPU: the f32 primitive's layout
    }
  }
  return memory::desc();
}

}  // namespace

BENCH_REGISTER(weight_reorder) {
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  // PP-LiteSeg-B (STDC2 and its head): (cout, cin, k, spatial size of the layer at 512x512).
  const int64_t layers[][4] = {{256, 512, 3, 16}, {128, 256, 3, 32}, {64, 128, 3, 64}, {128, 1024, 3, 16}};
  for (const auto& l : layers) {
    const memory::desc blocked = gradient_layout(eng, l[0], l[1], l[2], runner.quick() ? 4 : l[3]);
    kernels::BlockedWeights b;
    if (blocked.get_size() == 0 || !kernels::blocked_weights_of(blocked.data, b)) continue;  // oneDNN's reorder
    const memory::desc plain({l[0], l[1], l[2], l[2]}, memory::data_type::f32, memory::format_tag::oihw);
    std::vector<float> src(blocked.get_size() / sizeof(float)), ours(plain.get_size() / sizeof(float)),
        theirs(ours.size());
    for (size_t i = 0; i < src.size(); ++i) src[i] = (float)(i % 977) * 0.25f - 100.f;
    dnnl::memory from(blocked, eng, src.data()), to(plain, eng, theirs.data());
    dnnl::reorder onednn(from, to);
    const std::string shape =
        std::to_string(l[0]) + "x" + std::to_string(l[1]) + "x" + std::to_string(l[2]) + "x" + std::to_string(l[2]);
    bench::Work work;
    work.bytes = 8.0 * (double)ours.size();
    auto same = [&]() -> std::string {
      kernels::weights_from_blocked_cpu(src.data(), b, ours.data());
      onednn.execute(stream, from, to);
      stream.wait();
      return std::memcmp(ours.data(), theirs.data(), ours.size() * sizeof(float)) == 0
                 ? ""
                 : "the engine's reorder and oneDNN's differ";
    };
    runner.run("weight_gradient_reorder", shape, Device::cpu(), work, same,
               [&] { kernels::weights_from_blocked_cpu(src.data(), b, ours.data()); });
    runner.run("weight_gradient_reorder_onednn", shape, Device::cpu(), work, same, [&] {
      onednn.execute(stream, from, to);
      stream.wait();
    });
  }
}
