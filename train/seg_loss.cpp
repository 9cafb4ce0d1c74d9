#include "train/seg_loss.h"

#include "base/error.h"
#include "engine/ops/elementwise.h"
#include "engine/ops/loss.h"

namespace engine::train {

SegLoss::SegLoss(const LossSpec& spec, int64_t num_classes, Device device) : spec_(spec) {
  ENGINE_CHECK(!spec_.terms.empty(), "loss: no loss types configured");
  ENGINE_CHECK(spec_.terms.size() == spec_.coef.size(), "loss: ", spec_.terms.size(), " types but ", spec_.coef.size(),
               " coefs");
  for (const LossTermSpec& t : spec_.terms) {
    Tensor w;
    if (!t.weight.empty()) {
      ENGINE_CHECK((int64_t)t.weight.size() == num_classes, t.where, ".weight: expected ", num_classes,
                   " class weights, got ", t.weight.size());
      ENGINE_CHECK(t.type == "CrossEntropyLoss", t.where,
                   ".weight: class weights are supported for CrossEntropyLoss only");
      w = Tensor::from_vector(std::vector<float>(t.weight.begin(), t.weight.end()), {num_classes}, device);
    }
    if (t.type == "CrossEntropyLoss") {
      ENGINE_CHECK(t.top_k_percent_pixels == 1.0, t.where, ".top_k_percent_pixels: only 1.0 is supported, got ",
                   t.top_k_percent_pixels);
      ENGINE_CHECK(t.avg_non_ignore, t.where, ".avg_non_ignore: only True (PaddleSeg's default) is supported");
    } else if (t.type != "OhemCrossEntropyLoss") {
      fail(t.where, ".type: unsupported loss '", t.type, "' (supported: CrossEntropyLoss, OhemCrossEntropyLoss)");
    }
    class_weights_.push_back(w);
  }
}

SegLossValues SegLoss::operator()(const std::vector<Tensor>& logits, const Tensor& labels, bool upsample) const {
  ENGINE_CHECK(logits.size() == spec_.terms.size(), "loss: the model returned ", logits.size(),
               " logits but the config has ", spec_.terms.size(), " loss terms (loss.types / loss.coef)");
  SegLossValues out;
  for (size_t i = 0; i < logits.size(); ++i) {
    const LossTermSpec& t = spec_.terms[i];
    Tensor li;
    if (t.type == "CrossEntropyLoss")
      li = upsample ? upsampled_cross_entropy(logits[i], labels, class_weights_[i], t.ignore_index)
                    : cross_entropy(logits[i], labels, class_weights_[i], t.ignore_index);
    else
      li = upsample ? upsampled_ohem_cross_entropy(logits[i], labels, (float)t.thresh, t.min_kept, t.ignore_index)
                    : ohem_cross_entropy(logits[i], labels, (float)t.thresh, t.min_kept, t.ignore_index);
    Tensor term = spec_.coef[i] == 1.0 ? li : mul(li, (float)spec_.coef[i]);
    out.total = out.total.defined() ? add(out.total, term) : term;
    out.terms.push_back(term);
  }
  return out;
}

}  // namespace engine::train
