// The data loader: batches of decoded, augmented samples as CPU tensors, with optional worker
// threads decoding ahead of the trainer.
//
// Semantics source: PaddleSeg's DistributedBatchSampler + paddle.io.DataLoader (reference/ppliteseg.md
// §5.2): each epoch is a permutation of the data set (shuffle) cut into batches; drop_last drops the
// final short batch; training re-iterates the loader forever (it counts iterations, not epochs).
//
// Determinism (the design):
//   - The order of epoch e is a Fisher–Yates shuffle driven by Rng(mix_seed(seed, e)) (our own code:
//     std::shuffle and the std distributions differ between standard libraries), or the identity
//     when shuffle is off.
//   - The sample at position p of epoch e is augmented with its own Rng(mix_seed(seed, e, p)).
//   So batch (e, b) is a pure function of (seed, e, b): identical for any num_workers, and a resumed
//   run that calls seek(e, b) sees exactly the batches and augmentations of an uninterrupted one. The
//   only state to checkpoint is (epoch, batch_in_epoch) of the next batch. Epochs count from 0.
// Threads: num_workers = 0 loads on the calling thread. N > 0 starts N threads (on the first next())
// that each build whole batches, in sequence order, at most N * prefetch batches ahead of the
// consumer; next() returns them in order. A worker's exception is stored with its batch and rethrown
// by the next() that reaches that batch (the message names the file); the destructor stops and joins
// the threads (work in flight finishes its current batch first).
//
// Tested by tests/test_data.cpp (same batches for 0/1/3 workers, seek, drop_last, reshuffling, errors).
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/dataset.h"
#include "engine/tensor.h"

namespace engine::data {

struct LoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;
  bool drop_last = false;
  int num_workers = 0;
  int prefetch = 2;  // batches in flight per worker
  uint64_t seed = 0;
};

// A batch: named CPU tensors plus where it came from. Segmentation: "images" f32 [B, H, W, 3] and,
// when every sample has one, "labels" i64 [B, H, W]. Detection (data/det_loader.h): "images",
// "gt_box", "gt_class", "gt_score" and the evaluation's extras.
struct Batch {
  std::map<std::string, Tensor> tensors;
  std::vector<int64_t> indices;  // data set indices of the samples
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  const Tensor& at(const std::string& name) const;  // error naming the tensor and the batch's tensors
};

// What the loader needs from a task's data: the number of samples, a name for messages, and the
// collate stage that turns the samples at `indices` into a Batch. The loader owns the order
// (epoch permutations) and the threads; a source owns decoding, per-sample transforms (sample at
// position p of epoch e draws from Rng(mix_seed(seed, e, p))), batch transforms and stacking.
// build() is called from worker threads concurrently and must be thread-safe.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0;
  virtual const std::string& where() const = 0;  // config key path, e.g. "train_dataset"
  // Fills b.tensors for b.indices (b.epoch, b.batch_in_epoch set); `first_position` is the
  // position of b.indices[0] within the epoch.
  virtual void build(Batch& b, int64_t first_position, uint64_t seed) const = 0;
};

// The segmentation source: SegDataset::load per sample, then stacking (same size required).
class SegBatchSource : public BatchSource {
 public:
  explicit SegBatchSource(std::shared_ptr<const SegDataset> dataset);
  int64_t size() const override { return dataset_->size(); }
  const std::string& where() const override { return dataset_->where(); }
  void build(Batch& b, int64_t first_position, uint64_t seed) const override;
  const SegDataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<const SegDataset> dataset_;
};

class DataLoader {
 public:
  DataLoader(std::shared_ptr<const BatchSource> source, LoaderOptions options);
  // A segmentation data set through SegBatchSource.
  DataLoader(std::shared_ptr<const SegDataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  const LoaderOptions& options() const { return opt_; }
  const BatchSource& source() const { return *source_; }

  // The next batch; after the last batch of an epoch, the first of the next epoch.
  Batch next();
  // The next call to next() returns batch `batch_in_epoch` of `epoch`.
  void seek(int64_t epoch, int64_t batch_in_epoch);
  // Position of the batch the next call to next() returns.
  int64_t next_epoch() const;
  int64_t next_batch_in_epoch() const;

  // The data set indices of epoch `epoch`, in order (the permutation, or 0..N-1).
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // Builds batch (epoch, batch_in_epoch) synchronously (what the workers run).
  Batch load_batch(int64_t epoch, int64_t batch_in_epoch) const;

 private:
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };
  void start_workers();
  void worker_loop();

  std::shared_ptr<const BatchSource> source_;
  LoaderOptions opt_;
  int64_t batches_per_epoch_ = 0;

  mutable std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  int64_t next_out_ = 0;    // sequence number (epoch * batches_per_epoch + batch) next() returns
  int64_t next_job_ = 0;    // sequence number the next idle worker builds
  int64_t generation_ = 0;  // bumped by seek(): results of older generations are dropped
  bool stop_ = false;
  std::map<int64_t, Result> ready_;
  std::vector<std::thread> workers_;
};

// One image as f32 [1, H, W, C] / one label as i64 [1, H, W] (evaluation at full size).
Tensor image_to_tensor(const Image& image);
Tensor label_to_tensor(const Label& label);

}  // namespace engine::data
