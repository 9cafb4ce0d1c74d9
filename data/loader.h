// The data loader: batches of decoded, augmented samples as CPU tensors, with optional worker
// threads decoding ahead of the trainer.
//
// Semantics source: PaddleSeg's DistributedBatchSampler + paddle.io.DataLoader (paddleseg/core/train.py,
// Paddle's python/paddle/io/dataloader/batch_sampler.py): each
// epoch is a permutation of the data set (shuffle) cut into batches; drop_last drops the final short
// batch; training re-iterates the loader forever (it counts iterations, not epochs).
//
// Data parallel (rank r of world_size W; W = 1 is the single-process loader, bit for bit):
//   - The epoch order of N indices is padded to total = ceil(N / W) * W by repeating its head
//     (padded[p] = order[p % N]), so every rank gets total / W samples and the same number of batches.
//   - Each run of batch_size * W consecutive positions is one global step: rank r takes the
//     batch_size positions starting at r * batch_size. The remainder (total mod batch_size * W, a
//     multiple of W) is split into W equal runs, rank r's is its short last batch (dropped with
//     drop_last). This is Paddle's _get_indices_by_batch_size. A batch is therefore always one run
//     of consecutive positions, which is what BatchSource::build expects (a strided split, r, r + W,
//     ..., as in torch's DistributedSampler, would not be), and the W batches of a step together are
//     the positions a single process with batch batch_size * W would take.
//   - Deliberate differences from Paddle: the order is shuffled first and then padded (Paddle pads
//     0..N-1 first and shuffles the padded list), so the repeated samples change from epoch to
//     epoch instead of always being the first ones; the permutation is our own (below), not NumPy's.
//   - Positions >= N in a batch (Batch::first_position + i) are padding repeats: an evaluator that
//     shards with drop_last off drops them, as PaddleSeg's val.py does.
//
// Determinism (the design):
//   - The order of epoch e is a Fisher–Yates shuffle driven by Rng(mix_seed(seed, e)) (our own code:
//     std::shuffle and the std distributions differ between standard libraries), or the identity
//     when shuffle is off. Every rank computes the same order.
//   - The sample at position p of epoch e's padded order is augmented with its own
//     Rng(mix_seed(seed, e, p)). Positions are global, so no two ranks draw the same numbers, and a
//     padding repeat is augmented differently from its original.
//   So batch (e, b) is a pure function of (seed, e, b, rank, world_size): identical for any
//   num_workers, and a resumed run that calls seek(e, b) sees exactly the batches and augmentations of
//   an uninterrupted one. The only state to checkpoint is (epoch, batch_in_epoch) of the next batch
//   (the same on every rank). Epochs count from 0.
// Threads: num_workers = 0 loads on the calling thread. N > 0 starts N threads (on the first next())
// that each build whole batches, in sequence order, at most N * prefetch batches ahead of the
// consumer; next() returns them in order. A worker's exception is stored with its batch and rethrown
// by the next() that reaches that batch (the message names the file); the destructor stops and joins
// the threads (work in flight finishes its current batch first).
//
// Tested by tests/test_data.cpp: same batches for 0/1/3 workers, seek, drop_last, reshuffling,
// errors; the ShardedLoader tests: shards disjoint but for the padding and covering the data, padding =
// the head, world 1 = the single-process order, per-rank determinism with 0/1/2 workers, per-rank
// seek, per-rank batch counts, rank/world_size errors.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
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
  // Data parallel: this process takes shard `rank` of `world_size` of every epoch (see above).
  int rank = 0;
  int world_size = 1;
};

// A batch: named CPU tensors plus where it came from. Segmentation: "images" f32 [B, H, W, 3] and,
// when every sample has one, "labels" i64 [B, H, W]. Detection (data/det_loader.h): "images",
// "gt_box", "gt_class", "gt_score" and the evaluation's extras.
struct Batch {
  std::map<std::string, Tensor> tensors;
  std::vector<int64_t> indices;  // data set indices of the samples
  int64_t epoch = 0;
  int64_t batch_in_epoch = 0;
  // Position of indices[0] in the epoch's padded order; sample i is at first_position + i, and
  // positions >= the data set size are padding repeats.
  int64_t first_position = 0;

  bool has(const std::string& name) const { return tensors.count(name) != 0; }
  const Tensor& at(const std::string& name) const;  // error naming the tensor and the batch's tensors
};

// What the loader needs from a task's data: the number of samples, a name for messages, and the
// collate stage that turns the samples at `indices` into a Batch. The loader owns the order
// (epoch permutations, shards) and the threads; a source owns decoding, per-sample transforms (sample
// at position p of epoch e's padded order draws from Rng(mix_seed(seed, e, p))), batch transforms and
// stacking.
// build() is called from worker threads concurrently and must be thread-safe.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual int64_t size() const = 0;
  virtual const std::string& where() const = 0;  // config key path, e.g. "train_dataset"
  // Fills b.tensors for b.indices (b.epoch, b.batch_in_epoch, b.first_position set); `first_position`
  // (= b.first_position) is the position of b.indices[0] in the epoch's padded order, the batch's
  // samples are at consecutive positions.
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

  // Batches per epoch of this rank (the same on every rank).
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  // ceil(N / world_size) * world_size: the length of the padded epoch order.
  int64_t padded_epoch_size() const { return padded_size_; }
  const LoaderOptions& options() const { return opt_; }
  const BatchSource& source() const { return *source_; }

  // The next batch; after the last batch of an epoch, the first of the next epoch.
  Batch next();
  // The next call to next() returns batch `batch_in_epoch` of `epoch`.
  void seek(int64_t epoch, int64_t batch_in_epoch);
  // Position of the batch the next call to next() returns.
  int64_t next_epoch() const;
  int64_t next_batch_in_epoch() const;

  // The data set indices of epoch `epoch`, in order (the permutation, or 0..N-1); the same on every rank.
  std::vector<int64_t> epoch_order(int64_t epoch) const;
  // epoch_order(epoch) padded to padded_epoch_size() by repeating its head.
  std::vector<int64_t> padded_epoch_order(int64_t epoch) const;
  // Builds batch (epoch, batch_in_epoch) synchronously (what the workers run).
  Batch load_batch(int64_t epoch, int64_t batch_in_epoch) const;

 private:
  struct Result {
    Batch batch;
    std::exception_ptr error;
  };
  // First padded position and sample count of this rank's batch `batch_in_epoch`.
  std::pair<int64_t, int64_t> batch_span(int64_t batch_in_epoch) const;
  void start_workers();
  void worker_loop();

  std::shared_ptr<const BatchSource> source_;
  LoaderOptions opt_;
  int64_t batches_per_epoch_ = 0;
  int64_t padded_size_ = 0;  // ceil(N / world_size) * world_size
  int64_t full_steps_ = 0;   // runs of batch_size * world_size positions in the padded order
  int64_t tail_ = 0;         // this rank's samples of the remainder (< batch_size)

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
