// The colour map of PaddleSeg's predictions (paddleseg/utils/visualize.py get_color_map_list, which
// tools/predict.py uses for pseudo_color_prediction/ and added_prediction/): the list is built for
// n + 1 labels, label k's R, G, B taking the bits of k three at a time, most significant bit first,
// and its first entry (label 0, black) is dropped, so class 0 is (128, 0, 0), class 1 (0, 128, 0),
// class 2 (128, 128, 0), class 3 (0, 0, 128). --custom_color's values replace the start of the flat
// R, G, B list. Tested by tests/test_data.cpp (ColorMap.*).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

namespace engine::data {

// n colours; custom_color: whole R, G, B triples of values 0..255, at most n of them.
std::vector<std::array<uint8_t, 3>> seg_color_map(int n, const std::vector<int>& custom_color = {});

}  // namespace engine::data
