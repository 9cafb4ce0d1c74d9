// Reader for the weights files Paddle writes with paddle.save(state_dict, "x.pdparams"): a Python
// pickle (protocol 2, 3 or 4; paddle.save's default is 4) of a dict {name: numpy.ndarray} plus the
// entry "StructuredToParameterName@@" ({name: Paddle parameter name}, ignored here). Facts from
// paddle 3.3.1 python/paddle/framework/io.py (_build_saved_state_dict, _legacy_save, _pickle_save)
// and io_utils.py (_unpack_saved_dict, _pack_loaded_dict):
//  - each Tensor becomes np.array(tensor.cpu()); numpy pickles an array as
//    numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b') followed by BUILD with the state
//    (1, shape, dtype, is_fortran, raw bytes); the dtype is numpy.dtype(descr, False, True) followed
//    by BUILD with (3, byteorder, None, None, None, -1, -1, 0). numpy >= 2 names the module
//    numpy._core.multiarray. Under protocol 2 the raw bytes are _codecs.encode(str, 'latin1').
//  - with protocol 2/3 an array above 2^30 - 1 bytes is split into "name@@.0", "name@@.1", ... and the
//    dict gains "UnpackBigParamInfor@@" = {name: {"OriginShape": shape, "slices": [part names]}};
//    paddle.load concatenates them again, and so does this reader.
//  - objects that are not plain state dicts are pickled with each Tensor as the tuple (name, array)
//    (_pickle_save's reduce_varbase, also paddle 2.1's layout); such values are read as the array.
// Only that subset of pickle is executed: dict / OrderedDict, list, tuple, str, bytes, int, float,
// None, bools, the memo, and the globals above (numpy _reconstruct, ndarray, dtype, _codecs.encode,
// collections.OrderedDict, builtins.tuple, and builtins.bytes for protocol 2's b''). Any other opcode
// or global is refused with one line naming the file, the byte offset and the opcode, never executed.
// dtypes: float32 loads as F32; float16 and float64 are converted to F32 (weights); int64 -> I64,
// int32 -> I32, uint8 and bool -> U8; others (e.g. uint16, which is how Paddle stores bfloat16) are
// refused naming the tensor. Big-endian and Fortran-ordered arrays are converted.
// Tested by tests/test_pdparams.cpp with files written by tools/make_pdparams_fixtures.py.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace engine::train {

struct PdparamsTensor {
  std::string name;
  std::string numpy_dtype;  // as stored: "float32", "float16", "int64", ...
  Tensor tensor;            // CPU, contiguous (F32 for float16/float64 arrays)
};

struct PdparamsFile {
  std::string source;                   // for messages
  int protocol = 0;                     // the pickle protocol of the file
  std::vector<PdparamsTensor> tensors;  // the dict's order (Python's insertion order)
};

// Parses a whole pickle held in memory; `source` names it in errors ("path" or "archive (member m)").
// Errors are one line: "<source>: byte <offset>: opcode 0x63 (GLOBAL): global 'os.system' is not
// allowed ..." for the pickle machine, "<source>: tensor 'w': ..." for a bad array, "<source>: no
// tensors in the file (...)" when the dict holds no arrays.
PdparamsFile parse_pdparams(const char* data, size_t size, const std::string& source);

// Reads `path` and parses it.
PdparamsFile read_pdparams(const std::string& path);

}  // namespace engine::train
