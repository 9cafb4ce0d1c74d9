// labels: sanitize
// data/det_dataset.h (PaddleX 2.x VOCDetection / CocoDetection) on hand-written fixtures with known answers, every
// bad input with the content of its message, and the synthetic shapes set of data/det_synthetic.h.
// Files are written under std::filesystem::temp_directory_path().
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "base/error.h"
#include "data/det_dataset.h"
#include "data/det_synthetic.h"
#include "data/image_io.h"

using namespace engine;
using namespace engine::data;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() /
            ("engine_test_det_data_" + std::to_string(::getpid()) + "_" + info->test_suite_name() + "_" + info->name());
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
};

// Runs f, expects an engine::Error whose one-line message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << *parts.begin() << "'";
  } catch (const engine::Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line: " << msg;
  }
}

void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

void write_image(const std::string& path, int h, int w) {
  Image im;
  im.h = h, im.w = w, im.c = 3;
  im.data.assign((size_t)h * w * 3, 128.f);
  fs::create_directories(fs::path(path).parent_path());
  write_jpeg(path, im, 90);
}

std::string obj(const std::string& name, const std::string& box, const std::string& extra = "") {
  return "<object><name>" + name + "</name>" + extra + "<bndbox>" + box + "</bndbox></object>";
}
std::string box(const std::string& x1, const std::string& y1, const std::string& x2, const std::string& y2) {
  return "<xmin>" + x1 + "</xmin><ymin>" + y1 + "</ymin><xmax>" + x2 + "</xmax><ymax>" + y2 + "</ymax>";
}
std::string voc(const std::string& body, int w = 100, int h = 80) {
  const std::string size = w > 0 ? "<size><width>" + std::to_string(w) + "</width><height>" + std::to_string(h) +
                                       "</height><depth>3</depth></size>"
                                 : "";
  return "<annotation><filename>x.jpg</filename>" + size + body + "</annotation>\n";
}

// A VOC set in d: labels cat/dog/bird, images img/N.jpg (64x48 JPEGs), annotations ann/N.xml, list.txt.
struct VocSet {
  const TempDir& d;
  std::string list;
  explicit VocSet(const TempDir& dir) : d(dir) { write_text(d / "labels.txt", "cat\ndog\nbird\n"); }
  // Adds sample n with this XML text; returns its list line.
  std::string add(int n, const std::string& xml) {
    const std::string img = "img/" + std::to_string(n) + ".jpg", ann = "ann/" + std::to_string(n) + ".xml";
    write_image(d / img, 48, 64);
    write_text(d / ann, xml);
    list += img + " " + ann + "\n";
    return img + " " + ann;
  }
  DetDatasetSpec spec() const {
    write_text(d / "list.txt", list);
    DetDatasetSpec s;
    s.type = "VOCDetection";
    s.data_dir = d.str();
    s.file_list = d / "list.txt";
    s.label_list = d / "labels.txt";
    return s;
  }
};

std::array<float, 4> B(float a, float b, float c, float e) { return {a, b, c, e}; }

}  // namespace

// ------------------------------------------------------------------------------------------------------ VOC

TEST(VocDetection, ParsesClipsSkipsAndKeepsPaddleXsOrder) {
  TempDir d;
  VocSet v(d);
  // Sample 0: in-range box, difficult 1; box outside the image (clipped to 0 and W-1/H-1); difficult "1.0" reads
  // as 0 (Python int()); an object without <bndbox> and a degenerate one are skipped; x2 == x1 is kept.
  v.add(0, voc(obj("cat", box("10", "20", "30", "40"), "<difficult>1</difficult>") +
               obj("dog", box("-5", "-3.5", "120", "90")) +
               obj("bird", box("1.5", "2.25", "3.75", "4"), "<difficult>1.0</difficult>") +
               "<object><name>cat</name></object>" + obj("dog", box("50", "10", "40", "20")) +
               obj("bird", box("7", "7", "7", "9"))));
  // Sample 1: tags in other cases, no <size> (so no clipping at the far side), surrounding whitespace.
  v.add(1,
        "<Annotation><OBJECT><Name> dog </Name><Difficult> 1 </Difficult><BndBox><XMin>-1</XMin><YMin>2</YMin>"
        "<XMAX>500</XMAX><ymax> 600.5 </ymax></BndBox></OBJECT></Annotation>");
  // Sample 2: no objects -> dropped (allow_empty false), but it still counts for the image ids.
  v.add(2, voc(""));
  // Sample 3: only a skipped object -> dropped too.
  v.add(3, voc(obj("cat", box("90", "10", "95", "5"))));
  // Sample 4: blank line before it, a tab as separator and a Windows separator in the path.
  write_image(d / "img/4.jpg", 48, 64);
  write_text(d / "ann/4.xml", voc(obj("bird", box("0", "0", "99", "79"))));
  v.list += "\n   \nimg\\4.jpg\tann/4.xml\n";
  const DetDataset ds(v.spec());
  ASSERT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.labels(), (std::vector<std::string>{"cat", "dog", "bird"}));
  EXPECT_EQ(ds.category_ids(), (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(ds.num_positive(), 3);
  EXPECT_EQ(ds.max_objects(), 6);  // every <object> of sample 0 counts, skipped ones included

  const DetRecord& r0 = ds.record(0);
  EXPECT_EQ(r0.image, d / "img/0.jpg");
  EXPECT_EQ(r0.origin, d / "list.txt" + ":1");
  EXPECT_EQ(r0.width, 100);
  EXPECT_EQ(r0.height, 80);
  EXPECT_EQ(r0.image_id, 0);
  ASSERT_EQ(r0.boxes.size(), 4u);
  EXPECT_EQ(r0.boxes[0], B(10, 20, 30, 40));
  EXPECT_EQ(r0.boxes[1], B(0, 0, 99, 79));
  EXPECT_EQ(r0.boxes[2], B(1.5f, 2.25f, 3.75f, 4));
  EXPECT_EQ(r0.boxes[3], B(7, 7, 7, 9));
  EXPECT_EQ(r0.classes, (std::vector<int32_t>{0, 1, 2, 2}));
  EXPECT_EQ(r0.difficult, (std::vector<uint8_t>{1, 0, 0, 0}));
  // PaddleX's VOC->COCO conversion: [x1, y1, x2 - x1, y2 - y1], area (x2 - x1) * (y2 - y1).
  ASSERT_EQ(r0.coco_gts.size(), 4u);
  EXPECT_EQ(r0.coco_gts[1].category, 1);
  EXPECT_DOUBLE_EQ(r0.coco_gts[1].w, 99);
  EXPECT_DOUBLE_EQ(r0.coco_gts[1].h, 79);
  EXPECT_DOUBLE_EQ(r0.coco_gts[1].area, 99.0 * 79.0);
  EXPECT_FALSE(r0.coco_gts[1].iscrowd);

  const DetRecord& r1 = ds.record(1);
  EXPECT_EQ(r1.width, 0);
  EXPECT_EQ(r1.height, 0);
  EXPECT_EQ(r1.image_id, 1);
  ASSERT_EQ(r1.boxes.size(), 1u);
  EXPECT_EQ(r1.boxes[0], B(0, 2, 500, 600.5f));
  EXPECT_EQ(r1.classes, (std::vector<int32_t>{1}));
  EXPECT_EQ(r1.difficult, (std::vector<uint8_t>{1}));

  const DetRecord& r2 = ds.record(2);
  EXPECT_EQ(r2.image, d / "img/4.jpg");
  EXPECT_EQ(r2.origin, d / "list.txt" + ":7");
  EXPECT_EQ(r2.image_id, 4);  // the dropped samples 2 and 3 still advanced the running id
  EXPECT_EQ(r2.boxes[0], B(0, 0, 99, 79));

  const DetSample s = ds.load_raw(0);
  EXPECT_EQ(s.image.h, 48);
  EXPECT_EQ(s.image.w, 64);
  EXPECT_EQ(s.image.c, 3);
  EXPECT_EQ(s.orig_h, 48);
  EXPECT_EQ(s.orig_w, 64);
  EXPECT_EQ(s.scale_x, 1.f);
  EXPECT_EQ(s.scale_y, 1.f);
  EXPECT_EQ(s.index, 0);
  EXPECT_EQ(s.origin, r0.origin);
  EXPECT_EQ(s.boxes, r0.boxes);
  EXPECT_EQ(s.classes, r0.classes);
  EXPECT_EQ(s.difficult, r0.difficult);
  EXPECT_EQ(s.scores, (std::vector<float>(4, 1.f)));
  expect_error([&] { ds.load_raw(3); }, {"train_dataset", "sample index 3 out of range (size 3)"});
}

TEST(VocDetection, IdTagSetsTheRunningImageId) {
  TempDir d;
  VocSet v(d);
  v.add(0, "<annotation><id>7</id>" + obj("cat", box("1", "1", "5", "5")) + "</annotation>");
  v.add(1, voc(obj("cat", box("1", "1", "5", "5"))));
  const DetDataset ds(v.spec());
  EXPECT_EQ(ds.record(0).image_id, 7);
  EXPECT_EQ(ds.record(1).image_id, 8);
}

TEST(VocDetection, AllowEmptyAndEmptyRatio) {
  TempDir d;
  VocSet v(d);
  // Positives at list positions 0, 2, 4; negatives (no boxes) at 1, 3, 5, 6, 7.
  for (int n = 0; n < 8; ++n) v.add(n, n == 0 || n == 2 || n == 4 ? voc(obj("dog", box("1", "1", "5", "5"))) : voc(""));
  DetDatasetSpec spec = v.spec();
  EXPECT_EQ(DetDataset(spec).size(), 3);  // dropped by default
  EXPECT_EQ(DetDataset(spec).max_objects(), 1);
  spec.allow_empty = true;
  auto images = [](const DetDataset& ds) {
    std::vector<std::string> out;
    for (int64_t i = 0; i < ds.size(); ++i) out.push_back(fs::path(ds.record(i).image).stem().string());
    return out;
  };
  {  // ratio 1 (default): all negatives, after the positives
    const DetDataset ds(spec);
    EXPECT_EQ(ds.num_positive(), 3);
    EXPECT_EQ(images(ds), (std::vector<std::string>{"0", "2", "4", "1", "3", "5", "6", "7"}));
    EXPECT_TRUE(ds.record(3).boxes.empty());
    const DetSample s = ds.load_raw(3);
    EXPECT_TRUE(s.boxes.empty() && s.classes.empty() && s.scores.empty() && s.difficult.empty());
  }
  spec.empty_ratio = 0.5;  // floor(3 * 0.5 / 0.5) = 3 of 5, evenly spaced: negatives 0, 2, 4
  EXPECT_EQ(images(DetDataset(spec)), (std::vector<std::string>{"0", "2", "4", "1", "5", "7"}));
  spec.empty_ratio = 0.25;  // floor(0.75 / 0.75) = 1: the middle one
  EXPECT_EQ(images(DetDataset(spec)), (std::vector<std::string>{"0", "2", "4", "5"}));
  spec.empty_ratio = 0.0;
  EXPECT_EQ(DetDataset(spec).size(), 3);
  spec.empty_ratio = 0.9;  // floor(27) capped at the 5 there are
  EXPECT_EQ(DetDataset(spec).size(), 8);
  spec.empty_ratio = -1;  // < 0: all
  EXPECT_EQ(DetDataset(spec).size(), 8);
}

TEST(VocDetection, LabelListErrors) {
  TempDir d;
  VocSet v(d);
  v.add(0, voc(obj("cat", box("1", "1", "5", "5"))));
  DetDatasetSpec spec = v.spec();
  write_text(d / "labels.txt", "cat\n\ndog\n");
  expect_error([&] { DetDataset{spec}; }, {d / "labels.txt" + ":2", "blank line"});
  write_text(d / "labels.txt", "cat\ndog\n cat \n");
  expect_error([&] { DetDataset{spec}; }, {d / "labels.txt" + ":3", "class name 'cat' repeats line 1"});
  write_text(d / "labels.txt", "");
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.label_list", "names no class"});
  spec.label_list = d / "nope.txt";
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.label_list", "cannot open", "nope.txt"});
}

TEST(VocDetection, FileListErrors) {
  TempDir d;
  VocSet v(d);
  const std::string line = v.add(0, voc(obj("cat", box("1", "1", "5", "5"))));
  DetDatasetSpec spec = v.spec();
  const std::string list = d / "list.txt";
  write_text(list, line + "\nimg/my cat.jpg ann/0.xml\n");
  expect_error([&] { DetDataset{spec}; },
               {list + ":2", "A space is defined as the separator, but it exists in image or label name",
                "img/my cat.jpg ann/0.xml"});
  write_text(list, "img/0.jpg\n");
  expect_error([&] { DetDataset{spec}; }, {list + ":1", "expected 'image annotation'", "'img/0.jpg'"});
  write_text(list, "\n\n");
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.file_list", "No voc record found in", list});
  write_text(list, "img/0.jpg ann/0.xml\nimg/missing.jpg ann/0.xml\n");
  expect_error([&] { DetDataset{spec}; }, {d / "img/missing.jpg", "image file not found", list + ":2"});
  write_text(list, "img/0.jpg ann/missing.xml\n");
  expect_error([&] { DetDataset{spec}; }, {d / "ann/missing.xml", "annotation file not found", list + ":1"});
  write_text(list, "img/0.Jpg ann/0.xml\n");
  expect_error([&] { DetDataset{spec}; }, {list + ":1", "'img/0.Jpg' is not an image name"});
  spec.file_list = d / "nope.txt";
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.file_list", "cannot open", "nope.txt"});
}

TEST(VocDetection, XmlErrors) {
  TempDir d;
  VocSet v(d);
  v.add(0, voc(obj("cat", box("1", "1", "5", "5"))));
  const DetDatasetSpec spec = v.spec();
  const std::string xml = d / "ann/0.xml";
  auto with_xml = [&](const std::string& text, std::initializer_list<std::string> parts) {
    write_text(xml, text);
    expect_error([&] { DetDataset{spec}; }, parts);
  };
  with_xml("<annotation><object><name>cat</name></annotation>", {xml, "malformed XML"});
  with_xml("", {xml, "malformed XML"});
  with_xml(voc(obj("cat", box("1", "1", "5", "5")) + obj("zebra", box("1", "1", "5", "5"))),
           {xml, "object 2", "unknown class name 'zebra'", d / "labels.txt"});
  with_xml(voc("<object><bndbox>" + box("1", "1", "5", "5") + "</bndbox></object>"), {xml, "object 1 has no <name>"});
  with_xml(voc(obj("  ", box("1", "1", "5", "5"))), {xml, "object 1: <name> is empty"});
  with_xml(voc(obj("dog", "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>")),
           {xml, "object 1 (dog): <bndbox> has no <xmin>"});
  with_xml(voc(obj("dog", box("1", "1", "5", "abc"))), {xml, "object 1 (dog): <ymax> must be a number, got 'abc'"});
  with_xml(voc(obj("dog", box("1", "", "5", "5"))), {xml, "<ymin> must be a number, got ''"});
  with_xml(voc(obj("dog", box("1", "1", "0x5", "5"))), {xml, "<xmax> must be a number, got '0x5'"});
  with_xml(voc(obj("dog", box("1", "1", "inf", "5"))), {xml, "<xmax> must be a number, got 'inf'"});
  with_xml("<annotation><size><height>5</height></size>" + obj("dog", box("1", "1", "5", "5")) + "</annotation>",
           {xml, "<size> has no <width>"});
  with_xml("<annotation><size><width>5</width><height>five</height></size></annotation>",
           {xml, "<size><height> must be a number, got 'five'"});
  with_xml("<annotation><id>seven</id></annotation>", {xml, "<id> must be an integer, got 'seven'"});
  with_xml("<annotation><size><width>5e9</width><height>5</height></size></annotation>",
           {xml, "<size><width> must fit a 32-bit integer, got 5e+09"});
  // A value with a line break and a control byte is quoted on the message's one line, escaped.
  with_xml("<annotation><size><width>5</width><height>5\n\x01x</height></size></annotation>",
           {xml, "<size><height> must be a number, got '5\\n\\x01x'"});
  // Only images without a valid box and allow_empty false: nothing to train on.
  with_xml(voc(obj("dog", box("9", "1", "5", "5"))),
           {"train_dataset.file_list", "none of the 1 images", "allow_empty"});
}

TEST(VocDetection, SpecErrors) {
  TempDir d;
  VocSet v(d);
  v.add(0, voc(obj("cat", box("1", "1", "5", "5"))));
  DetDatasetSpec spec = v.spec();
  spec.where = "eval_dataset";
  spec.type = "VOC";
  expect_error([&] { DetDataset{spec}; }, {"eval_dataset.type", "unknown detection dataset type 'VOC'"});
  spec.type = "VOCDetection";
  spec.file_list.clear();
  expect_error([&] { DetDataset{spec}; }, {"eval_dataset.file_list: required"});
  spec = v.spec();
  spec.label_list.clear();
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.label_list: required"});
  spec = v.spec();
  spec.data_dir = d / "nope";
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.data_dir", "does not exist"});
  spec.data_dir.clear();
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.data_dir: required"});
  spec = v.spec();
  spec.type = "CocoDetection";
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.ann_file: required"});
}

// ----------------------------------------------------------------------------------------------------- COCO

namespace {

DetDatasetSpec coco_spec(const TempDir& d, const std::string& json) {
  write_text(d / "ann.json", json);
  DetDatasetSpec s;
  s.type = "CocoDetection";
  s.data_dir = d.str();
  s.ann_file = d / "ann.json";
  return s;
}

// Categories listed out of id order; images 5, 2, 9, 4 (64x48).
const char* kCocoCategories =
    R"("categories": [{"id": 7, "name": "b"}, {"id": 3, "name": "a"}, {"id": 10, "name": "c"}])";
const char* kCocoImages = R"("images": [
    {"id": 5, "file_name": "im/5.jpg", "width": 64, "height": 48},
    {"id": 2, "file_name": "im/2.jpg", "width": 64, "height": 48},
    {"id": 9, "file_name": "im/9.jpg", "width": 64, "height": 48},
    {"id": 4, "file_name": "im/4.png", "width": 64, "height": 48}])";

void write_coco_images(const TempDir& d) {
  for (const char* f : {"im/5.jpg", "im/2.jpg", "im/9.jpg"}) write_image(d / f, 48, 64);
  Image im;
  im.h = 48, im.w = 64, im.c = 3;
  im.data.assign((size_t)48 * 64 * 3, 10.f);
  write_png(d / "im/4.png", im);
}

std::string coco_json(const std::string& annotations) {
  return std::string("{") + kCocoCategories + ", " + kCocoImages + ", \"annotations\": [" + annotations + "]}";
}

const char* kCocoAnnotations = R"(
    {"id": 1, "image_id": 5, "category_id": 10, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0},
    {"id": 2, "image_id": 2, "category_id": 3, "bbox": [10, 20, 30, 20], "area": 600, "iscrowd": 0},
    {"id": 3, "image_id": 2, "category_id": 7, "bbox": [0, 0, 64, 48], "area": 3072, "iscrowd": 1},
    {"id": 4, "image_id": 2, "category_id": 7, "bbox": [-10, 5, 30, 10], "area": 300, "iscrowd": 0},
    {"id": 5, "image_id": 2, "category_id": 7, "bbox": [50, 40, 30, 30], "iscrowd": false},
    {"id": 6, "image_id": 2, "category_id": 3, "bbox": [5, 5, -3, 4], "area": 12, "iscrowd": 0},
    {"id": 7, "image_id": 2, "category_id": 3, "bbox": [20, 20, 5, 5], "area": 0, "iscrowd": 0},
    {"id": 8, "image_id": 9, "category_id": 3, "bbox": [70, 5, 5, 5], "area": 25, "iscrowd": 0},
    {"id": 9, "image_id": 9, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 1},
    {"id": 10, "image_id": 99, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0})";

}  // namespace

TEST(CocoDetection, ParsesClipsSkipsAndRemapsCategories) {
  TempDir d;
  write_coco_images(d);
  const DetDataset ds(coco_spec(d, coco_json(kCocoAnnotations)));
  // Class ids follow the JSON's category list (pycocotools getCatIds()), not the sorted ids.
  EXPECT_EQ(ds.labels(), (std::vector<std::string>{"b", "a", "c"}));
  EXPECT_EQ(ds.category_ids(), (std::vector<int64_t>{7, 3, 10}));
  // Ascending image ids; image 9 has only an invalid box and a crowd one, image 4 no annotation: both dropped.
  ASSERT_EQ(ds.size(), 2);
  EXPECT_EQ(ds.num_positive(), 2);
  const DetRecord& r = ds.record(0);
  EXPECT_EQ(r.image_id, 2);
  EXPECT_EQ(r.image, d / "im/2.jpg");
  EXPECT_EQ(r.origin, d / "ann.json" + ": image id 2");
  EXPECT_EQ(r.width, 64);
  EXPECT_EQ(r.height, 48);
  ASSERT_EQ(r.boxes.size(), 4u);
  EXPECT_EQ(r.boxes[0], B(10, 20, 40, 40));
  EXPECT_EQ(r.boxes[1], B(0, 5, 30, 15));    // PaddleX adds w to the clipped x1 (0 + 30), not to x (-10 + 30)
  EXPECT_EQ(r.boxes[2], B(50, 40, 63, 47));  // clipped to W - 1, H - 1; missing area = w * h = 900 > 0
  EXPECT_EQ(r.boxes[3], B(5, 5, 5, 9));      // negative width becomes 0: x2 == x1, kept
  EXPECT_EQ(r.classes, (std::vector<int32_t>{1, 0, 0, 1}));
  EXPECT_EQ(r.difficult, (std::vector<uint8_t>{0, 0, 0, 0}));
  // COCOeval's ground truth: every annotation of the image as written, crowd and invalid ones included.
  ASSERT_EQ(r.coco_gts.size(), 6u);
  EXPECT_TRUE(r.coco_gts[1].iscrowd);
  EXPECT_EQ(r.coco_gts[1].category, 0);
  EXPECT_DOUBLE_EQ(r.coco_gts[2].x, -10);
  EXPECT_DOUBLE_EQ(r.coco_gts[2].w, 30);
  EXPECT_DOUBLE_EQ(r.coco_gts[3].area, 900);
  EXPECT_DOUBLE_EQ(r.coco_gts[5].area, 0);
  EXPECT_EQ(ds.record(1).image_id, 5);
  EXPECT_EQ(ds.record(1).boxes[0], B(1, 2, 4, 6));
  EXPECT_EQ(ds.record(1).classes, (std::vector<int32_t>{2}));
  EXPECT_EQ(ds.max_objects(), 5);  // non-crowd annotations of image 2, the invalid one included
  const DetSample s = ds.load_raw(1);
  EXPECT_EQ(s.image.h, 48);
  EXPECT_EQ(s.image.w, 64);
  EXPECT_EQ(s.boxes, ds.record(1).boxes);
  EXPECT_EQ(s.index, 1);
}

TEST(CocoDetection, AllowEmptyKeepsImagesWithoutBoxes) {
  TempDir d;
  write_coco_images(d);
  DetDatasetSpec spec = coco_spec(d, coco_json(kCocoAnnotations));
  spec.allow_empty = true;
  const DetDataset ds(spec);
  ASSERT_EQ(ds.size(), 4);
  EXPECT_EQ(ds.num_positive(), 2);
  EXPECT_EQ(ds.record(2).image_id, 4);
  EXPECT_EQ(ds.record(3).image_id, 9);
  EXPECT_TRUE(ds.record(3).boxes.empty());
  EXPECT_EQ(ds.record(3).coco_gts.size(), 2u);
  EXPECT_EQ(ds.load_raw(2).image.h, 48);  // the PNG
  spec.empty_ratio = 0.2;                 // floor(2 * 0.2 / 0.8) = 0
  EXPECT_EQ(DetDataset(spec).size(), 2);
}

TEST(CocoDetection, Errors) {
  TempDir d;
  write_coco_images(d);
  const std::string path = d / "ann.json";
  auto with_json = [&](const std::string& text, std::initializer_list<std::string> parts) {
    const DetDatasetSpec spec = coco_spec(d, text);
    expect_error([&] { DetDataset{spec}; }, parts);
  };
  const std::string ann = R"({"image_id": 5, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25})";
  with_json(R"({"images": [}, )", {path, "malformed JSON", "parse error"});
  with_json("[1, 2]", {path, "expected a JSON object"});
  with_json(std::string("{") + kCocoImages + "}", {path, "missing 'categories'"});
  with_json(R"({"categories": []})", {path, "'categories' is empty"});
  with_json(R"({"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]})",
            {path, "categories[1]", "category id 1 repeats"});
  with_json(R"({"categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "a"}]})",
            {path, "categories[1]", "category name 'a' repeats (id 1)"});
  with_json(R"({"categories": [{"id": "1", "name": "a"}]})", {path, "categories[0]", "'id' must be an integer"});
  with_json(R"({"categories": [{"id": 1}]})", {path, "categories[0]", "missing 'name'"});
  with_json(coco_json(ann + R"(, {"image_id": 5, "category_id": 42, "bbox": [1, 1, 5, 5]})"),
            {path, "annotations[1]", "category_id 42 is not in 'categories'"});
  with_json(coco_json(R"({"image_id": 5, "category_id": 3, "bbox": [1, 1, 5]})"),
            {path, "annotations[0]", "'bbox' must be [x, y, width, height]"});
  with_json(coco_json(R"({"image_id": 5, "category_id": 3, "bbox": [1, 1, 5, "5"]})"),
            {path, "annotations[0]", "'bbox' must be"});
  with_json(coco_json(R"({"category_id": 3, "bbox": [1, 1, 5, 5]})"), {path, "annotations[0]", "missing 'image_id'"});
  with_json(coco_json(R"({"image_id": 5, "bbox": [1, 1, 5, 5]})"), {path, "annotations[0]", "missing 'category_id'"});
  with_json(coco_json(R"({"image_id": 5, "category_id": 3})"), {path, "annotations[0]", "missing 'bbox'"});
  with_json(coco_json(R"({"image_id": 5, "category_id": 3, "bbox": [1, 1, 5, 5], "area": "big"})"),
            {path, "annotations[0]", "'area' must be a number"});
  with_json(std::string("{") + kCocoCategories +
                R"(, "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4},
                                {"id": 1, "file_name": "b.jpg", "width": 4, "height": 4}]})",
            {path, "images[1]", "image id 1 repeats"});
  with_json(std::string("{") + kCocoCategories + R"(, "images": [{"id": 1, "width": 4, "height": 4}]})",
            {path, "images[0]", "missing 'file_name'"});
  with_json(std::string("{") + kCocoCategories +
                R"(, "images": [{"id": 1, "file_name": "a.jpg", "width": "4", "height": 4}]})",
            {path, "images[0]", "'width' must be a number"});
  with_json(
      std::string("{") + kCocoCategories + R"(, "images": [{"id": 1, "file_name": "a.jpg", "width": 0, "height": 4}]})",
      {path, "images[0]", "must be positive"});
  // A side int32 cannot hold (PaddleX stores the sides as int32).
  with_json(std::string("{") + kCocoCategories +
                R"(, "images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3.2e73}]})",
            {path, "images[0]", "'height' must fit a 32-bit integer, got 3.2e+73"});
  with_json(
      std::string("{") + kCocoCategories + R"(, "images": [{"id": 1, "file_name": "a.gif", "width": 4, "height": 4}]})",
      {path, "image id 1", "file_name 'a.gif' is not an image name"});
  with_json(std::string("{") + kCocoCategories +
                R"(, "images": [{"id": 1, "file_name": "im/gone.jpg", "width": 64, "height": 48}],
                   "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 5, 5], "area": 25}]})",
            {d / "im/gone.jpg", "image file not found", path + ": image id 1"});
  with_json(std::string("{") + kCocoCategories + "}", {"train_dataset.ann_file", "No coco record found in", path});
  with_json(coco_json(""), {"No coco record found in", "4 images", "allow_empty"});
  DetDatasetSpec spec = coco_spec(d, coco_json(ann));
  spec.ann_file = d / "nope.json";
  expect_error([&] { DetDataset{spec}; }, {"train_dataset.ann_file", "cannot open", "nope.json"});
}

// ------------------------------------------------------------------------------------------------ synthetic

TEST(SyntheticDet, DrawIsDeterministicAndBoxesAreTightAroundTheMasks) {
  constexpr int H = 256, W = 256;
  std::set<int> classes_seen;
  int small = 0, overlapping = 0, objects = 0;
  for (int i = 0; i < 24; ++i) {
    const SyntheticDetImage a = draw_synthetic_det(H, W, 3, i);
    const SyntheticDetImage b = draw_synthetic_det(H, W, 3, i);
    ASSERT_EQ(a.image.data, b.image.data) << "sample " << i;
    ASSERT_EQ(a.boxes, b.boxes);
    ASSERT_EQ(a.classes, b.classes);
    EXPECT_NE(a.image.data, draw_synthetic_det(H, W, 4, i).image.data);
    ASSERT_GE(a.boxes.size(), 1u);
    ASSERT_LE(a.boxes.size(), 6u);
    ASSERT_EQ(a.masks.size(), a.boxes.size());
    ASSERT_EQ(a.classes.size(), a.boxes.size());
    for (float v : a.image.data) ASSERT_TRUE(v >= 0 && v <= 255 && v == (float)(int)v);
    for (size_t k = 0; k < a.boxes.size(); ++k) {
      const auto& bx = a.boxes[k];
      ASSERT_TRUE(bx[0] >= 0 && bx[1] >= 0 && bx[2] <= W - 1 && bx[3] <= H - 1 && bx[0] <= bx[2] && bx[1] <= bx[3]);
      // Tight: every mask pixel inside the box and each box edge touched by the mask.
      int x0 = W, y0 = H, x1 = -1, y1 = -1;
      int64_t area = 0, visible = 0;
      for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
          if ((size_t)a.owner[(size_t)y * W + x] == k) {
            ASSERT_TRUE(a.masks[k][(size_t)y * W + x]);
            ++visible;
          }
          if (!a.masks[k][(size_t)y * W + x]) continue;
          ++area;
          x0 = std::min(x0, x), y0 = std::min(y0, y), x1 = std::max(x1, x), y1 = std::max(y1, y);
        }
      EXPECT_EQ(bx, (std::array<int, 4>{x0, y0, x1, y1})) << "sample " << i << " object " << k;
      EXPECT_GE((double)visible, 0.6 * (double)area) << "sample " << i << " object " << k;
      classes_seen.insert(a.classes[k]);
      small += std::max(bx[2] - bx[0], bx[3] - bx[1]) + 1 <= 20;
      ++objects;
      for (size_t o = 0; o < k; ++o) {
        const auto& c = a.boxes[o];
        overlapping += std::max(bx[0], c[0]) <= std::min(bx[2], c[2]) && std::max(bx[1], c[1]) <= std::min(bx[3], c[3]);
      }
    }
  }
  EXPECT_EQ(classes_seen, (std::set<int>{0, 1, 2, 3}));
  // Tiny images still get at least one shape (sizes bottom out at 10 px).
  for (int i = 0; i < 50; ++i)
    for (int size : {32, 64}) EXPECT_GE(draw_synthetic_det(size, size, 1, i).boxes.size(), 1u) << size << " " << i;
  EXPECT_GT(small, objects / 10) << small << " small of " << objects;
  EXPECT_GT(overlapping, 3);
}

TEST(SyntheticDet, WritesAVocSetThatParsesBack) {
  TempDir d;
  SyntheticDetSpec spec;
  spec.root = d / "set";
  spec.train = 6;
  spec.val = 2;
  spec.height = 96;
  spec.width = 128;
  spec.seed = 11;
  generate_synthetic_det(spec);
  for (const char* f : {"labels.txt", "train_list.txt", "val_list.txt", ".synthetic_det", "JPEGImages/0007.jpg",
                        "Annotations/0007.xml"})
    EXPECT_TRUE(fs::is_regular_file(d / ("set/" + std::string(f)))) << f;
  EXPECT_EQ(read_all(d / "set/labels.txt"), "circle\nsquare\ntriangle\ncross\n");
  EXPECT_EQ(read_all(d / "set/val_list.txt"),
            "JPEGImages/0006.jpg Annotations/0006.xml\n"
            "JPEGImages/0007.jpg Annotations/0007.xml\n");
  const std::string xml0 = read_all(d / "set/Annotations/0000.xml");
  const std::string jpg0 = read_all(d / "set/JPEGImages/0000.jpg");

  DetDatasetSpec ds_spec;
  ds_spec.data_dir = spec.root;
  ds_spec.label_list = d / "set/labels.txt";
  for (const char* list : {"train_list.txt", "val_list.txt"}) {
    ds_spec.file_list = d / ("set/" + std::string(list));
    const DetDataset ds(ds_spec);
    const int first = list[0] == 't' ? 0 : spec.train;
    ASSERT_EQ(ds.size(), list[0] == 't' ? spec.train : spec.val);
    EXPECT_EQ(ds.labels(), synthetic_det_classes());
    EXPECT_LE(ds.max_objects(), 6);
    for (int64_t i = 0; i < ds.size(); ++i) {
      const SyntheticDetImage drawn = draw_synthetic_det(spec.height, spec.width, spec.seed, first + i);
      const DetRecord& r = ds.record(i);
      EXPECT_EQ(r.width, spec.width);
      EXPECT_EQ(r.height, spec.height);
      ASSERT_EQ(r.boxes.size(), drawn.boxes.size());
      for (size_t k = 0; k < r.boxes.size(); ++k) {
        const auto& b = drawn.boxes[k];
        EXPECT_EQ(r.boxes[k], B((float)b[0], (float)b[1], (float)b[2], (float)b[3]));
      }
      EXPECT_EQ(r.classes, drawn.classes);
      EXPECT_EQ(r.difficult, std::vector<uint8_t>(drawn.boxes.size(), 0));
      const DetSample s = ds.load_raw(i);
      EXPECT_EQ(s.orig_h, spec.height);
      EXPECT_EQ(s.orig_w, spec.width);
    }
  }
  // Regenerating into its own output gives the same files; a foreign non-empty folder is refused.
  generate_synthetic_det(spec);
  EXPECT_EQ(read_all(d / "set/Annotations/0000.xml"), xml0);
  EXPECT_EQ(read_all(d / "set/JPEGImages/0000.jpg"), jpg0);
  write_text(d / "other/file.txt", "x");
  spec.root = d / "other";
  expect_error([&] { generate_synthetic_det(spec); }, {d / "other", "refusing to write", ".synthetic_det"});
  spec.root = d / "set2";
  spec.train = 0;
  expect_error([&] { generate_synthetic_det(spec); }, {"train must be >= 1"});
}
