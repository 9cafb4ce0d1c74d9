// Coverage-guided fuzz targets (libFuzzer) for the readers of files a user hands the engine: Paddle
// weights (pickle), tar / tar.gz archives, checkpoints (safetensors), PNG / JPEG images and labels,
// Pascal VOC XML and COCO JSON annotations, and training configs (YAML, both schemas). Built and run by
// tools/fuzz/run.sh, one target per binary (FUZZ_TARGET_<NAME>). A reader may only return or throw engine::Error with a
// one-line message: any other exception, a crash, a sanitizer report (ASan, UBSan) or a message with a line break ends
// the run with the input saved as crash-<hash>.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/error.h"
#if defined(FUZZ_TARGET_PDPARAMS)
#include "train/pdparams.h"
#elif defined(FUZZ_TARGET_TAR)
#include "train/tar_archive.h"
#elif defined(FUZZ_TARGET_SAFETENSORS)
#include "train/safetensors.h"
#elif defined(FUZZ_TARGET_IMAGE)
#include "data/image_io.h"
#elif defined(FUZZ_TARGET_VOC) || defined(FUZZ_TARGET_COCO)
#include "data/det_dataset.h"
#elif defined(FUZZ_TARGET_YAML)
#include "train/config.h"
#include "train/det_config.h"
#endif

namespace {

void require_one_line(const engine::Error& e) {
  if (std::strchr(e.what(), '\n') || std::strchr(e.what(), '\r')) {
    std::fprintf(stderr, "error message with a line break: %s\n", e.what());
    std::abort();
  }
}

// The readers below take paths: each input is written to a file of this process under /dev/shm.
const std::string& scratch_dir() {
  static const std::string dir = [] {
    const std::string d = "/dev/shm/engine_fuzz_" + std::to_string(getpid());
    std::filesystem::create_directories(d + "/JPEGImages");
    std::filesystem::create_directories(d + "/Annotations");
    std::ofstream(d + "/JPEGImages/0.jpg") << "x";  // the data sets check that images exist, not their bytes
    std::ofstream(d + "/JPEGImages/1.jpg") << "x";
    std::ofstream(d + "/train_list.txt") << "JPEGImages/0.jpg Annotations/0.xml\nJPEGImages/1.jpg Annotations/1.xml\n";
    std::ofstream(d + "/labels.txt") << "circle\nsquare\ntriangle\ncross\n";
    // A config may name `_base_: base.yml` (or itself, a cycle the loader must report).
    std::ofstream(d + "/base.yml") << "batch_size: 2\niters: 10\nmodel:\n  type: PPLiteSeg\n  num_classes: 2\n"
                                      "optimizer:\n  type: SGD\n  momentum: 0.9\n";
    std::ofstream(d + "/Annotations/1.xml")
        << "<annotation><object><name>circle</name><bndbox><xmin>1</xmin>"
           "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>";
    return d;
  }();
  return dir;
}

void write_file(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
#if defined(FUZZ_TARGET_PDPARAMS)
    engine::train::parse_pdparams(reinterpret_cast<const char*>(data), size, "fuzz.pdparams");
#elif defined(FUZZ_TARGET_TAR)
    const auto archive =
        engine::train::TarArchive::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.tar");
    for (const auto& m : archive.members()) archive.read(m.name);
    try {
      archive.single_with_suffix(".pdparams");
    } catch (const engine::Error& e) {
      require_one_line(e);
    }
#elif defined(FUZZ_TARGET_SAFETENSORS)
    const std::string path = scratch_dir() + "/input.safetensors";
    write_file(path, data, size);
    try {
      engine::train::load_safetensors(path, true);
    } catch (const engine::Error& e) {
      require_one_line(e);
    }
    engine::train::load_safetensors(path, false);  // past the checksum, to reach the rest of the reader
#elif defined(FUZZ_TARGET_IMAGE)
    const std::string path = scratch_dir() + "/input";
    write_file(path, data, size);
    try {
      engine::data::read_image(path);
    } catch (const engine::Error& e) {
      require_one_line(e);
    }
    engine::data::read_label(path);
#elif defined(FUZZ_TARGET_VOC) || defined(FUZZ_TARGET_COCO)
    engine::data::DetDatasetSpec spec;
    spec.data_dir = scratch_dir();
#if defined(FUZZ_TARGET_VOC)
    write_file(scratch_dir() + "/Annotations/0.xml", data, size);
    spec.file_list = scratch_dir() + "/train_list.txt";
    spec.label_list = scratch_dir() + "/labels.txt";
#else
    spec.type = "CocoDetection";
    spec.ann_file = scratch_dir() + "/ann.json";
    write_file(spec.ann_file, data, size);
#endif
    for (const bool allow_empty : {false, true}) {
      spec.allow_empty = allow_empty;
      try {
        const engine::data::DetDataset set(spec);
        for (int64_t i = 0; i < set.size(); ++i) set.record(i);
      } catch (const engine::Error& e) {
        require_one_line(e);
      }
    }
#elif defined(FUZZ_TARGET_YAML)
    const std::string path = scratch_dir() + "/config.yml";
    write_file(path, data, size);
    // Both schemas and the task sniffing read every input; each may refuse it.
    try {
      engine::train::config_task(path);
    } catch (const engine::Error& e) {
      require_one_line(e);
    }
    try {
      engine::train::load_det_train_config(path, {"epochs=3"}, {{"batch_size", "2"}});
    } catch (const engine::Error& e) {
      require_one_line(e);
    }
    engine::train::load_train_config(path, {"model.num_classes=3"}, 5, 2, 0.01);
#else
#error "define one FUZZ_TARGET_<NAME>"
#endif
  } catch (const engine::Error& e) {
    require_one_line(e);
  }
  return 0;
}
