// DataLoader: epoch permutations, data-parallel shards, per-sample seeded augmentation, worker threads
// with a bounded, ordered queue (see loader.h for the shard layout and the determinism design). Tested
// by tests/test_data.cpp.
#include "data/loader.h"

#include <algorithm>
#include <cstring>

#include "base/error.h"

namespace engine::data {

const Tensor& Batch::at(const std::string& name) const {
  auto it = tensors.find(name);
  if (it == tensors.end()) {
    std::string present;
    for (const auto& [n, t] : tensors) present += (present.empty() ? "" : ", ") + n;
    fail("batch (epoch ", epoch, ", batch ", batch_in_epoch, ") has no tensor '", name, "' (it has: ", present, ")");
  }
  return it->second;
}

SegBatchSource::SegBatchSource(std::shared_ptr<const SegDataset> dataset) : dataset_(std::move(dataset)) {
  ENGINE_CHECK(dataset_ != nullptr, "SegBatchSource: no data set");
}

DataLoader::DataLoader(std::shared_ptr<const SegDataset> dataset, LoaderOptions options)
    : DataLoader(std::make_shared<SegBatchSource>(std::move(dataset)), options) {}

DataLoader::DataLoader(std::shared_ptr<const BatchSource> source, LoaderOptions options)
    : source_(std::move(source)), opt_(options) {
  ENGINE_CHECK(source_ != nullptr, "DataLoader: no data set");
  const std::string& w = source_->where();
  ENGINE_CHECK(opt_.batch_size >= 1, "DataLoader(", w, "): batch_size must be >= 1, got ", opt_.batch_size);
  ENGINE_CHECK(opt_.num_workers >= 0, "DataLoader(", w, "): num_workers must be >= 0, got ", opt_.num_workers);
  ENGINE_CHECK(opt_.prefetch >= 1, "DataLoader(", w, "): prefetch must be >= 1, got ", opt_.prefetch);
  ENGINE_CHECK(opt_.world_size >= 1, "DataLoader(", w, "): world_size must be >= 1, got ", opt_.world_size);
  ENGINE_CHECK(opt_.rank >= 0 && opt_.rank < opt_.world_size, "DataLoader(", w, "): rank ", opt_.rank,
               " is outside [0, world_size ", opt_.world_size, ")");
  const int64_t n = source_->size(), world = opt_.world_size, bs = opt_.batch_size;
  const int64_t per_rank = (n + world - 1) / world;
  padded_size_ = per_rank * world;
  full_steps_ = padded_size_ / (bs * world);
  tail_ = (padded_size_ - full_steps_ * bs * world) / world;  // the remainder is a multiple of world
  batches_per_epoch_ = full_steps_ + (!opt_.drop_last && tail_ > 0 ? 1 : 0);
  if (batches_per_epoch_ == 0) {
    if (world == 1)
      fail("DataLoader(", w, "): the data set has ", n, " samples, fewer than batch_size ", bs,
           " with drop_last, so no batch can be formed");
    fail("DataLoader(", w, "): the data set has ", n, " samples, ", per_rank, " per rank with world_size ", world,
         ", fewer than batch_size ", bs, " with drop_last, so no batch can be formed");
  }
}

DataLoader::~DataLoader() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
}

std::vector<int64_t> DataLoader::epoch_order(int64_t epoch) const {
  const int64_t n = source_->size();
  std::vector<int64_t> order(n);
  for (int64_t i = 0; i < n; ++i) order[i] = i;
  if (opt_.shuffle) {
    Rng rng(mix_seed(opt_.seed, (uint64_t)epoch));
    for (int64_t i = n - 1; i > 0; --i) std::swap(order[i], order[rng.randint(0, i)]);
  }
  return order;
}

std::vector<int64_t> DataLoader::padded_epoch_order(int64_t epoch) const {
  std::vector<int64_t> order = epoch_order(epoch);
  const size_t n = order.size();
  order.resize((size_t)padded_size_);
  for (size_t p = n; p < order.size(); ++p) order[p] = order[p % n];  // p % n: N < world repeats the list
  return order;
}

std::pair<int64_t, int64_t> DataLoader::batch_span(int64_t batch_in_epoch) const {
  const int64_t bs = opt_.batch_size, world = opt_.world_size;
  if (batch_in_epoch < full_steps_) return {batch_in_epoch * bs * world + opt_.rank * bs, bs};
  return {full_steps_ * bs * world + opt_.rank * tail_, tail_};
}

Batch DataLoader::load_batch(int64_t epoch, int64_t batch_in_epoch) const {
  ENGINE_CHECK(epoch >= 0 && batch_in_epoch >= 0 && batch_in_epoch < batches_per_epoch_, "DataLoader(",
               source_->where(), "): batch ", batch_in_epoch, " of epoch ", epoch, " does not exist (",
               batches_per_epoch_, " batches per epoch)");
  const std::vector<int64_t> order = epoch_order(epoch);
  const int64_t n = (int64_t)order.size();
  const auto [begin, count] = batch_span(batch_in_epoch);
  Batch b;
  b.epoch = epoch;
  b.batch_in_epoch = batch_in_epoch;
  b.first_position = begin;
  b.indices.resize((size_t)count);
  for (int64_t i = 0; i < count; ++i) b.indices[(size_t)i] = order[(size_t)((begin + i) % n)];  // padded order
  source_->build(b, begin, opt_.seed);
  return b;
}

void SegBatchSource::build(Batch& b, int64_t first_position, uint64_t seed) const {
  std::vector<Sample> samples;
  for (size_t i = 0; i < b.indices.size(); ++i) {
    Rng rng(mix_seed(seed, (uint64_t)b.epoch, (uint64_t)(first_position + (int64_t)i)));
    samples.push_back(dataset_->load(b.indices[i], rng));
  }
  const Sample& s0 = samples[0];
  bool labelled = true;
  for (size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    if (s.image.h != s0.image.h || s.image.w != s0.image.w || s.image.c != s0.image.c)
      fail("DataLoader(", dataset_->where(),
           "): images in a batch must have the same size after the transforms: ", dataset_->image_path(b.indices[0]),
           " is ", s0.image.h, "x", s0.image.w, " but ", dataset_->image_path(b.indices[i]), " is ", s.image.h, "x",
           s.image.w, " (crop or resize to a fixed size, or use batch_size 1)");
    labelled = labelled && s.has_label;
  }
  const int64_t bs = (int64_t)samples.size(), h = s0.image.h, w = s0.image.w, c = s0.image.c;
  Tensor images = Tensor::empty({bs, h, w, c}, DType::F32);
  float* img = images.data<float>();
  const size_t img_elems = (size_t)h * w * c;
  for (int64_t i = 0; i < bs; ++i) std::memcpy(img + i * img_elems, samples[i].image.data.data(), img_elems * 4);
  b.tensors["images"] = images;
  if (labelled) {
    const Label& l0 = s0.label;
    for (size_t i = 0; i < samples.size(); ++i) {
      const Label& l = samples[i].label;
      if (l.h != l0.h || l.w != l0.w)
        fail("DataLoader(", dataset_->where(),
             "): labels in a batch must have the same size: ", dataset_->label_path(b.indices[0]), " is ", l0.h, "x",
             l0.w, " but ", dataset_->label_path(b.indices[i]), " is ", l.h, "x", l.w,
             " (use batch_size 1 for evaluation at full size)");
    }
    Tensor labels = Tensor::empty({bs, (int64_t)l0.h, (int64_t)l0.w}, DType::I64);
    int64_t* lab = labels.data<int64_t>();
    const size_t lab_elems = (size_t)l0.h * l0.w;
    for (int64_t i = 0; i < bs; ++i) {
      const uint8_t* src = samples[i].label.data.data();
      for (size_t k = 0; k < lab_elems; ++k) lab[i * lab_elems + k] = src[k];
    }
    b.tensors["labels"] = labels;
  }
}

Batch DataLoader::next() {
  if (opt_.num_workers == 0) {
    int64_t k;
    {
      std::lock_guard<std::mutex> lk(mu_);
      k = next_out_++;  // advance first: a failing batch is skipped by the following call
    }
    return load_batch(k / batches_per_epoch_, k % batches_per_epoch_);
  }
  std::unique_lock<std::mutex> lk(mu_);
  if (workers_.empty()) start_workers();
  const int64_t k = next_out_;
  done_cv_.wait(lk, [&] { return ready_.count(k) != 0; });
  Result r = std::move(ready_.at(k));
  ready_.erase(k);
  ++next_out_;
  lk.unlock();
  work_cv_.notify_all();  // room for one more batch ahead
  if (r.error) std::rethrow_exception(r.error);
  return std::move(r.batch);
}

void DataLoader::seek(int64_t epoch, int64_t batch_in_epoch) {
  ENGINE_CHECK(epoch >= 0 && batch_in_epoch >= 0 && batch_in_epoch < batches_per_epoch_, "DataLoader(",
               source_->where(), ")::seek: batch ", batch_in_epoch, " of epoch ", epoch, " does not exist (",
               batches_per_epoch_, " batches per epoch)");
  {
    std::lock_guard<std::mutex> lk(mu_);
    ++generation_;
    ready_.clear();
    next_out_ = next_job_ = epoch * batches_per_epoch_ + batch_in_epoch;
  }
  work_cv_.notify_all();
}

int64_t DataLoader::next_epoch() const {
  std::lock_guard<std::mutex> lk(mu_);
  return next_out_ / batches_per_epoch_;
}

int64_t DataLoader::next_batch_in_epoch() const {
  std::lock_guard<std::mutex> lk(mu_);
  return next_out_ % batches_per_epoch_;
}

// Called with mu_ held.
void DataLoader::start_workers() {
  next_job_ = next_out_;
  for (int i = 0; i < opt_.num_workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void DataLoader::worker_loop() {
  const int64_t ahead = (int64_t)opt_.num_workers * opt_.prefetch;
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    work_cv_.wait(lk, [&] { return stop_ || next_job_ < next_out_ + ahead; });
    if (stop_) return;
    const int64_t k = next_job_++;
    const int64_t gen = generation_;
    lk.unlock();
    Result r;
    try {
      r.batch = load_batch(k / batches_per_epoch_, k % batches_per_epoch_);
    } catch (...) {
      r.error = std::current_exception();  // delivered in order by next(); never escapes the thread
    }
    lk.lock();
    if (gen != generation_) continue;  // a seek() made this batch obsolete
    ready_.emplace(k, std::move(r));
    done_cv_.notify_all();
  }
}

Tensor image_to_tensor(const Image& image) {
  ENGINE_CHECK(image.h > 0 && image.w > 0 && image.c > 0 && image.data.size() == (size_t)image.h * image.w * image.c,
               "image_to_tensor: inconsistent image ", image.h, "x", image.w, "x", image.c);
  Tensor t = Tensor::empty({1, image.h, image.w, image.c}, DType::F32);
  std::memcpy(t.data<float>(), image.data.data(), image.data.size() * sizeof(float));
  return t;
}

Tensor label_to_tensor(const Label& label) {
  ENGINE_CHECK(label.h > 0 && label.w > 0 && label.data.size() == (size_t)label.h * label.w,
               "label_to_tensor: inconsistent label ", label.h, "x", label.w);
  Tensor t = Tensor::empty({1, label.h, label.w}, DType::I64);
  int64_t* d = t.data<int64_t>();
  for (size_t i = 0; i < label.data.size(); ++i) d[i] = label.data[i];
  return t;
}

}  // namespace engine::data
