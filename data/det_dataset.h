// Detection data sets: PaddleX 2.x `VOCDetection` (file list + Pascal VOC XML) and `CocoDetection` (one COCO JSON).
// Everything is parsed at construction, as PaddleX does; load_raw() only decodes the image.
//
// Semantics source: PaddleX release/2.1 `paddlex/cv/datasets/voc.py`, `coco.py`, `paddlex/utils/utils.py`
// (is_pic, path_normalization) and pycocotools' COCO index.
//
// VOC layout (data_dir holds e.g. JPEGImages/ and Annotations/):
//   label_list   one class name per line (surrounding whitespace stripped); the 0-based line number is the class
//                id. A blank line or a repeated name is an error (PaddleX would count '' as a class, and a repeat
//                would make two ids share one name).
//   file_list    one sample per line, "img.jpg ann.xml", paths relative to data_dir (absolute ones stay as they
//                are; '\' becomes '/'). The line is stripped and split at whitespace as Python's str.split():
//                more than 2 items raise PaddleX's "A space is defined as the separator, but it exists in image or
//                label name ..."; 1 item is an error; blank lines are skipped. The image name must end in one of
//                PaddleX's is_pic suffixes (jpg jpeg JPG JPEG png PNG bmp BMP). Image and XML must both exist.
//                (PaddleX silently skips lines with another suffix or a missing XML and warns on a missing image;
//                here each of these is an error naming the list file and line.)
//   XML          tags are matched case-insensitively, each among the direct children of its parent (PaddleX finds
//                the first spelling in the file and then matches it exactly):
//                <annotation> [<id>] [<size><width/><height/></size>] <object>* with <name>, [<difficult>],
//                [<bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>].
//                - <size> present: width and height are required numbers; boxes are clipped to x2 <= W - 1 and
//                  y2 <= H - 1 (only when both exceed 0.5, as PaddleX). x1, y1 are always clipped to >= 0.
//                - <name> is required and must be in label_list (error names the XML file and the name).
//                - <difficult> is read as Python's int(): anything that is not an integer counts as 0.
//                - an object without <bndbox> is skipped (PaddleX warns); inside <bndbox> the four coordinates
//                  are required finite numbers (floats allowed).
//                - after clipping, objects with x2 < x1 or y2 < y1 are skipped (x2 == x1 is kept).
//                - <id> (exact tag, as PaddleX's tree.find('id')) sets the image id and the running count
//                  continues from it; without it the id is the running count of parsed XMLs.
//   Images whose XML yields no box are negatives: dropped unless allow_empty.
// COCO (ann_file, image file_name joined to data_dir):
//   - class ids: the position of the category in the JSON's "categories" list, which is pycocotools'
//     getCatIds() order as PaddleX uses it (not sorted by id; COCO's own files list them sorted). Category ids
//     and names must be unique. labels() are the names in that order, category_ids() the original ids.
//   - images are taken in ascending image id (PaddleX sorts getImgIds()); ids must be unique integers,
//     file_name a string with an is_pic suffix, width/height positive numbers. Kept images must exist.
//   - annotations with iscrowd != 0 are skipped for training (getAnnIds(iscrowd=False)); iscrowd defaults to
//     0 and area to the bbox's w * h when absent (pycocotools / PaddleX would raise a KeyError).
//   - bbox [x, y, w, h]: x1 = max(0, x), y1 = max(0, y), x2 = min(W - 1, x1 + max(0, w)),
//     y2 = min(H - 1, y1 + max(0, h)) (PaddleX adds w to the clipped x1, not to x); kept when area > 0,
//     x2 >= x1 and y2 >= y1 (PaddleX warns "Found an invalid bbox in annotations" for the others).
//   - every annotation needs image_id, category_id and bbox (as pycocotools' index does); a category_id that is
//     not a category is an error; an annotation whose image_id is not an image is ignored (as pycocotools).
//   Images without a kept box are negatives: dropped unless allow_empty.
// Both:
//   - samples are the positives in list / id order, then the kept negatives; allow_empty with empty_ratio in
//     [0, 1) keeps min(len(neg), floor(pos * r / (1 - r))) negatives (so that they make about r of the total),
//     any other ratio keeps all. PaddleX draws that subset with random.sample; here it is evenly spaced over
//     the negatives in list order, so the set does not depend on a seed.
//   - no list entry (VOC) or no image kept (COCO): PaddleX's "No voc record found in ..." / "No coco record found
//     in ..."; VOC entries but no sample (only negatives, allow_empty false): an error too (PaddleX would build an
//     empty set), as is an empty_ratio that keeps no negative when there is no positive.
//   - max_objects(): PaddleX's count behind num_max_boxes: the largest number of <object> elements of a parsed
//     XML (skipped objects and dropped negatives included), or of non-crowd annotations of an image that was
//     not dropped (COCO). PaddleX then uses max(50, that) (x2 with MixupImage).
//   - boxes are float32 as PaddleX stores them (computed in double, then rounded once).
// Errors: engine::Error, one line naming the file (and line, key or id) and what was expected.
//
// Evaluation hand-over (train/det_metrics.h): record(i) gives the ground truth of sample i without decoding:
//   VocMap:   {classes[k], {boxes[k][0..3]}, difficult[k] != 0} per box (PaddleX's VOCMetric takes the gt boxes
//             of the batch, i.e. these clipped boxes).
//   CocoEval: coco_gts: for COCO the image's annotations as the JSON has them (original bbox and area, crowd
//             ones included, invalid ones too: pycocotools' COCOeval sees all of them); for VOC what PaddleX's
//             VOC->COCO conversion writes ([x1, y1, x2 - x1, y2 - y1], area (x2 - x1) * (y2 - y1), no crowd).
//             `category` is the class id; the 12 COCO stats do not depend on how categories are numbered as
//             long as detections use the same numbers. image_id orders images as pycocotools does (COCO ids
//             are unique; VOC <id> tags could repeat, use the sample index there).
//
// Tested by tests/test_det_data.cpp (VOC and COCO fixtures: clipping, difficult, case-insensitive tags,
// skipped boxes and objects, negatives and empty_ratio, category order, crowd, max_objects, every error
// message listed there, and the synthetic set of data/det_synthetic.h parsed back).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/det_sample.h"

namespace engine::data {

// A `train_dataset:` / `eval_dataset:` entry of a PaddleX detection config, without YAML.
struct DetDatasetSpec {
  std::string type = "VOCDetection";  // VOCDetection | CocoDetection
  std::string data_dir;
  std::string file_list;   // VOCDetection
  std::string label_list;  // VOCDetection
  std::string ann_file;    // CocoDetection
  bool allow_empty = false;
  double empty_ratio = 1.0;             // PaddleX: share of negatives; < 0 or >= 1 keeps them all
  std::string where = "train_dataset";  // config key path for error messages
};

// One annotation as COCOeval reads it (category = class id, see above).
struct CocoGtBox {
  int32_t category = 0;
  double x = 0, y = 0, w = 0, h = 0;
  double area = 0;
  bool iscrowd = false;
};

// Everything known about one sample before decoding.
struct DetRecord {
  std::string image;                        // path
  std::string origin;                       // "list.txt:12" or "ann.json: image id 7", for messages
  int64_t image_id = 0;                     // PaddleX's im_id
  int height = 0, width = 0;                // XML <size> / JSON image (0 when the XML has no <size>)
  std::vector<std::array<float, 4>> boxes;  // x1, y1, x2, y2 in original pixels, clipped
  std::vector<int32_t> classes;             // 0-based
  std::vector<uint8_t> difficult;           // 0/1
  std::vector<CocoGtBox> coco_gts;          // for CocoEval
};

class DetDataset {
 public:
  // Parses and checks everything (files named by the lists must exist); throws engine::Error.
  explicit DetDataset(const DetDatasetSpec& spec);

  int64_t size() const { return (int64_t)records_.size(); }
  int num_classes() const { return (int)labels_.size(); }
  const std::vector<std::string>& labels() const { return labels_; }  // class names, index = class id
  // COCO: the category id of each class; VOC: class id + 1 (PaddleX's VOC->COCO conversion).
  const std::vector<int64_t>& category_ids() const { return category_ids_; }
  const std::string& type() const { return type_; }
  const std::string& where() const { return where_; }
  int64_t num_positive() const { return num_positive_; }  // samples 0..num_positive()-1 have boxes
  int max_objects() const { return max_objects_; }

  const DetRecord& record(int64_t index) const;
  // Decodes the image (RGB) and fills the sample: boxes/classes/difficult from the record, scores 1,
  // orig_h/orig_w = decoded size, scale 1, index, origin. Thread-safe.
  DetSample load_raw(int64_t index) const;

 private:
  void parse_voc(const DetDatasetSpec& spec);
  void parse_coco(const DetDatasetSpec& spec);
  // Appends the negatives kept by allow_empty / empty_ratio after the positives.
  void add_negatives(const DetDatasetSpec& spec, std::vector<DetRecord> negatives);

  std::string type_, where_;
  std::vector<std::string> labels_;
  std::vector<int64_t> category_ids_;
  std::vector<DetRecord> records_;
  int64_t num_positive_ = 0;
  int max_objects_ = 0;
};

}  // namespace engine::data
