// One entry point for every weights path the trainer accepts (a config's model.pretrained /
// model.backbone.pretrained, a detection config's pretrain_weights, --model_path of engine-eval and
// engine-predict). The format is recognised from the content, not the file name:
//   - safetensors (u64 header length, then '{'): load_safetensors (train/safetensors.h), checksum
//     verified for our own checkpoints;
//   - a paddle.save pickle (first byte 0x80, protocol 2-4): parse_pdparams (train/pdparams.h), e.g.
//     PaddleSeg's model.pdparams and PaddleDetection / PaddleClas *_pretrained.pdparams;
//   - a tar archive, gzip-compressed or not (.tar, .tar.gz, .tgz; train/tar_archive.h), holding exactly
//     one *.pdparams file, e.g. PaddleSeg's PP_STDCNet2.tar.gz with PP_STDCNet2/model.pdparams;
//   - a gzip-compressed .pdparams.
// Errors are one line starting with `key` (the config key or flag), e.g.
//   "model.backbone.pretrained: /x/y.pdparams: byte 1234: opcode 0x63 (GLOBAL): global 'os.system' ..."
// Tested by tests/test_pdparams.cpp.
#pragma once
#include <ostream>
#include <string>

#include "models/module.h"
#include "train/safetensors.h"

namespace engine::train {

// Reads `path` (a file; a folder or a missing file is an Error). The result's metadata holds
// "source_format" = "safetensors" | "pdparams" and, for archives, "archive_member"; pdparams files
// add "pickle_protocol". Tensor names are the file's keys, in file order.
LoadedTensors read_weights_file(const std::string& path, const std::string& key);

// PaddleDetection's rule for fitting a pretrained file to a model (ppdet/utils/checkpoint.py
// match_state_dict, default mode, PaddleDetection release/2.7 / develop at commit 01ec099e):
// each model key takes the file key that equals it or is a dotted suffix of it ("conv0.conv.weight"
// fills "backbone.conv0.conv.weight"), the longest such file key winning (the first in sorted order
// on a tie); a file key "backbone.res5..." is compared without its "backbone." prefix. Returns the
// file's tensors renamed to the model keys they matched, ready for Module::load_matching (which
// skips shape mismatches with its [SKIP] line and prints the n/total summary). As in Paddle, a file
// key that fills two model keys of the same shape is an Error naming them (ambiguous), and the file
// keys no model key took are listed in one line on `log` ("... in pretrained weight is not used in
// the model, and its will not be loaded", at most 10 names then the count).
nn::StateDict match_state_dict_by_suffix(const nn::StateDict& model, const LoadedTensors& file, std::ostream* log);

}  // namespace engine::train
