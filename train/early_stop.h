// Early stopping over the evaluations, by one of two rules.
// Rule::PaddleX: PaddleX's EarlyStop (paddlex/utils/utils.py, identical in 1.x and 2.x),
// called once per evaluation with the key metric, so `patience` counts evaluations, not epochs:
//   first call: remember the score (the maximum stays 0);
//   score > max: counter = 0, score = max = it;
//   else if |score - previous| < thresh or score < previous: counter += 1, score = it; stop when
//        counter >= patience;
//   else (a rise that does not beat the maximum): counter = 0, score = it.
// The comparison is with the previous evaluation, not with the best (as PaddleX).
// Rule::PaddleSeg: PaddleSeg's --early_stop_intervals (paddleseg/core/train.py, develop), compared
// with the best: a new best (strictly higher; the first evaluation is one) resets the counter, a
// score below the best adds one, a tie leaves it; stop when counter >= patience.
// The state is three numbers, saved in checkpoints so that a resumed run stops where an
// uninterrupted one would.
// Tested by tests/test_det_train.cpp (DetEarlyStop: PaddleX) and tests/test_trainer.cpp (EarlyStopRule:
// PaddleSeg, and engine-train stopping by it).
#pragma once
#include <cmath>
#include <cstdint>
#include <optional>

namespace engine::train {

class EarlyStop {
 public:
  enum class Rule { PaddleX, PaddleSeg };
  explicit EarlyStop(int64_t patience, Rule rule = Rule::PaddleX, double thresh = 1e-4)
      : patience_(patience), rule_(rule), thresh_(thresh) {}

  // Returns true when training should stop after this evaluation.
  bool operator()(double score) {
    if (rule_ == Rule::PaddleSeg) {
      if (!score_ || score > max_) {
        counter_ = 0;
        max_ = score;
      } else if (score < max_) {
        counter_ += 1;
      }
      score_ = score;
      return counter_ >= patience_;
    }
    if (!score_) {
      score_ = score;
      return false;
    }
    if (score > max_) {
      counter_ = 0;
      score_ = max_ = score;
      return false;
    }
    if (std::fabs(*score_ - score) < thresh_ || score < *score_) {
      counter_ += 1;
      score_ = score;
      return counter_ >= patience_;
    }
    counter_ = 0;
    score_ = score;
    return false;
  }

  int64_t counter() const { return counter_; }
  int64_t patience() const { return patience_; }
  Rule rule() const { return rule_; }
  std::optional<double> score() const { return score_; }
  double max() const { return max_; }
  void restore(std::optional<double> score, double max, int64_t counter) {
    score_ = score;
    max_ = max;
    counter_ = counter;
  }

 private:
  int64_t patience_;
  Rule rule_;
  double thresh_;
  std::optional<double> score_;
  double max_ = 0;
  int64_t counter_ = 0;
};

}  // namespace engine::train
