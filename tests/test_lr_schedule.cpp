// labels: config sanitize
// LR schedules (train/lr_schedule.h) against values worked out from Paddle's
// python/paddle/optimizer/lr.py (PolynomialDecay, LinearWarmup, PiecewiseDecay): the quick start, the
// real 500-iteration log of PaddleSeg PR #928, the Cityscapes schedule with linear warmup, plus
// PiecewiseDecay, the end of the decay and bad specs. FromReferenceConfig builds the schedules from
// PaddleSeg's own config files, which are not part of this repository: it reads them from
// ../shared/reference/paddleseg-configs next to the checkout and is skipped when that is absent.
// Values are compared as PaddleSeg prints them ("lr: {:.6f}" at 1-based iteration k = lr_at(k - 1))
// and, where a closed form is easy, exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "train/config.h"
#include "train/lr_schedule.h"

using namespace engine::train;

namespace {

// The lr PaddleSeg's log line shows at 1-based iteration k.
std::string logged(const LRSchedule& s, int64_t k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", s.lr_at(k - 1));
  return buf;
}

LRSpec poly(double lr, double end = 0, double power = 0.9) {
  LRSpec s;
  s.type = "PolynomialDecay";
  s.learning_rate = lr;
  s.end_lr = end;
  s.power = power;
  return s;
}

}  // namespace

TEST(LRSchedule, QuickStartPolynomial) {
  // quick start: lr 0.01, 1000 iters, power 0.9, no warmup.
  const LRSchedule s(poly(0.01), 1000);
  EXPECT_EQ(s.decay_steps(), 1000);
  EXPECT_EQ(logged(s, 10), "0.009919");
  EXPECT_EQ(logged(s, 20), "0.009829");
  EXPECT_EQ(logged(s, 500), "0.005369");
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(499), 0.01 * std::pow(1.0 - 499.0 / 1000.0, 0.9));
}

TEST(LRSchedule, Pr928FiveHundredIterationLog) {
  // A real PaddleSeg log of a 500-iteration run (PR #928): iter 20 lr 0.009657, iter 40 lr 0.009295.
  const LRSchedule s(poly(0.01), 500);
  EXPECT_EQ(logged(s, 20), "0.009657");
  EXPECT_EQ(logged(s, 40), "0.009295");
}

TEST(LRSchedule, CityscapesWarmup) {
  // pp_liteseg Cityscapes: lr 0.005, 160000 iters, warmup 1000 iters from 1e-5.
  LRSpec spec = poly(0.005);
  spec.warmup_iters = 1000;
  spec.warmup_start_lr = 1e-5;
  const LRSchedule s(spec, 160000);
  EXPECT_EQ(s.decay_steps(), 159000);  // iters - warmup_iters
  EXPECT_EQ(logged(s, 10), "0.000055");
  EXPECT_EQ(logged(s, 1000), "0.004995");
  EXPECT_EQ(logged(s, 1001), "0.005000");
  // The reference's "iter 80000 -> 0.002695" belongs to this schedule (poly over 159000 steps, at
  // t = 79999 - 1000), not to _base_/cityscapes.yml's (see BaseCityscapesEnd).
  EXPECT_EQ(logged(s, 80000), "0.002695");
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-5);
  EXPECT_DOUBLE_EQ(s.lr_at(500), 1e-5 + (0.005 - 1e-5) * 0.5);
  EXPECT_DOUBLE_EQ(s.lr_at(1000), 0.005);  // the first post-warmup step is the base rate
  EXPECT_NEAR(s.lr_at(159999), 0.005 * std::pow(1.0 / 159000.0, 0.9), 1e-16);
  EXPECT_EQ(s.lr_at(160000), 0.0);
}

TEST(LRSchedule, BaseCityscapesEnd) {
  // _base_/cityscapes.yml: lr 0.01, 80000 iters, no warmup. Its last iteration (80000) runs at
  // 0.01 * (1/80000)^0.9 = 3.8656e-7, which the log prints as 0.000000.
  const LRSchedule s(poly(0.01), 80000);
  EXPECT_NEAR(s.lr_at(79999), 3.8656186838792874e-07, 1e-18);
  EXPECT_EQ(logged(s, 80000), "0.000000");
  EXPECT_EQ(logged(s, 40000), "0.005359");
}

TEST(LRSchedule, EndOfDecayIsEndLr) {
  LRSpec spec = poly(0.01, 1e-4, 2.0);
  spec.decay_steps = 100;  // an explicit decay_steps wins over iters
  const LRSchedule s(spec, 1000);
  EXPECT_EQ(s.decay_steps(), 100);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(50), (0.01 - 1e-4) * 0.25 + 1e-4);
  EXPECT_EQ(s.lr_at(100), 1e-4);
  EXPECT_EQ(s.lr_at(999), 1e-4);  // cycle = False: stays at end_lr
  EXPECT_EQ(s.lr_at(1000000), 1e-4);
}

TEST(LRSchedule, WarmupShortensDefaultDecay) {
  LRSpec spec = poly(0.01);
  spec.warmup_iters = 20;
  spec.warmup_start_lr = 1e-4;
  const LRSchedule s(spec, 300);  // configs/pp_liteseg_synthetic_256x256.yml
  EXPECT_EQ(s.decay_steps(), 280);
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-4);
  EXPECT_DOUBLE_EQ(s.lr_at(10), 1e-4 + (0.01 - 1e-4) * 10.0 / 20.0);
  EXPECT_DOUBLE_EQ(s.lr_at(20), 0.01);
  EXPECT_DOUBLE_EQ(s.lr_at(21), 0.01 * std::pow(1.0 - 1.0 / 280.0, 0.9));
  EXPECT_NEAR(s.lr_at(299), 0.01 * std::pow(1.0 / 280.0, 0.9), 1e-17);
}

TEST(LRSchedule, Piecewise) {
  LRSpec spec;
  spec.type = "PiecewiseDecay";
  spec.boundaries = {100, 200};
  spec.values = {0.1, 0.01, 0.001};
  const LRSchedule s(spec, 0);  // needs no iters
  EXPECT_EQ(s.lr_at(0), 0.1);
  EXPECT_EQ(s.lr_at(99), 0.1);
  EXPECT_EQ(s.lr_at(100), 0.01);  // Paddle: values[i] for the first t < boundaries[i]
  EXPECT_EQ(s.lr_at(199), 0.01);
  EXPECT_EQ(s.lr_at(200), 0.001);
  EXPECT_EQ(s.lr_at(1000000), 0.001);

  spec.warmup_iters = 10;  // LinearWarmup to values[0]; the boundaries count after the warmup
  spec.warmup_start_lr = 0;
  const LRSchedule w(spec, 0);
  EXPECT_DOUBLE_EQ(w.lr_at(5), 0.05);
  EXPECT_EQ(w.lr_at(10), 0.1);
  EXPECT_EQ(w.lr_at(109), 0.1);
  EXPECT_EQ(w.lr_at(110), 0.01);
  EXPECT_NE(w.describe().find("PiecewiseDecay"), std::string::npos);
  EXPECT_NE(w.describe().find("LinearWarmup(10 steps"), std::string::npos);
}

TEST(LRSchedule, Stateless) {
  // Resuming needs only t: evaluating out of order gives the same values.
  const LRSchedule s(poly(0.01), 1000);
  const double a = s.lr_at(700);
  (void)s.lr_at(3);
  EXPECT_EQ(s.lr_at(700), a);
}

TEST(LRSchedule, BadSpecs) {
  LRSpec unknown = poly(0.01);
  unknown.type = "CosineAnnealingDecay";
  EXPECT_THROW(LRSchedule(unknown, 100), engine::Error);
  EXPECT_THROW(LRSchedule(poly(0.01), 0), engine::Error);  // no decay_steps, no iters
  EXPECT_THROW(LRSchedule(poly(0.01, 0, 0.0), 100), engine::Error);
  LRSpec pw;
  pw.type = "PiecewiseDecay";
  pw.boundaries = {10};
  pw.values = {0.1};
  EXPECT_THROW(LRSchedule(pw, 100), engine::Error);
  EXPECT_THROW(LRSchedule(poly(0.01), 100).lr_at(-1), engine::Error);
  try {
    LRSchedule(unknown, 100);
  } catch (const engine::Error& e) {
    EXPECT_NE(std::string(e.what()).find("CosineAnnealingDecay"), std::string::npos) << e.what();
  }
}

TEST(LRSchedule, FromReferenceConfig) {
  // The schedule built from the real config file, as the trainer builds it.
  const auto dir =
      std::filesystem::path(__FILE__).parent_path().parent_path() / ".." / "shared" / "reference" / "paddleseg-configs";
  if (!std::filesystem::exists(dir)) GTEST_SKIP() << "reference configs not found at " << dir;
  const TrainConfig cfg =
      load_train_config((dir / "pp_liteseg/pp_liteseg_stdc1_cityscapes_1024x512_scale0.5_160k.yml").string());
  const LRSchedule s(cfg.lr_scheduler, cfg.iters);
  EXPECT_EQ(logged(s, 10), "0.000055");
  EXPECT_EQ(logged(s, 1001), "0.005000");
  EXPECT_EQ(logged(s, 80000), "0.002695");
  const TrainConfig quick = load_train_config((dir / "quick_start/pp_liteseg_optic_disc_512x512_1k.yml").string());
  const LRSchedule q(quick.lr_scheduler, quick.iters);
  EXPECT_EQ(logged(q, 500), "0.005369");
}
