#include "data/color_map.h"

#include "base/error.h"

namespace engine::data {

std::vector<std::array<uint8_t, 3>> seg_color_map(int n, const std::vector<int>& custom_color) {
  ENGINE_CHECK(n >= 1, "color map: needs at least one class, got ", n);
  ENGINE_CHECK(custom_color.size() % 3 == 0 && custom_color.size() / 3 <= (size_t)n,
               "color map: custom colours must be whole R G B triples, at most ", n, ", got ", custom_color.size(),
               " values");
  std::vector<std::array<uint8_t, 3>> map((size_t)n, {0, 0, 0});
  for (int i = 0; i < n; ++i) {
    int label = i + 1;  // PaddleSeg drops label 0's black entry
    for (int bit = 7; label > 0; --bit, label >>= 3)
      for (int c = 0; c < 3; ++c) map[(size_t)i][(size_t)c] |= (uint8_t)(((label >> c) & 1) << bit);
  }
  for (size_t k = 0; k < custom_color.size(); ++k) {
    ENGINE_CHECK(custom_color[k] >= 0 && custom_color[k] <= 255, "color map: custom colour values must be 0..255, got ",
                 custom_color[k]);
    map[k / 3][k % 3] = (uint8_t)custom_color[k];
  }
  return map;
}

}  // namespace engine::data
